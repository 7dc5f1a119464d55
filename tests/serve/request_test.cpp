// Request bodies: what parses into which fields, and which ApiError names which field.
#include <gtest/gtest.h>
#include <tandem/serve/request.hpp>

namespace tandem::serve {
namespace {

template <typename T>
ApiError error_of(const Parsed<T>& p) {
  EXPECT_FALSE(p.ok());
  return p.ok() ? ApiError{} : p.error();
}

ApiError completion_error(std::string_view body, RequestLimits lim = {}) {
  return error_of(parse_completion_request(body, lim));
}
ApiError chat_error(std::string_view body) { return error_of(parse_chat_request(body)); }

TEST(CompletionRequest, ParsesEveryKnownField) {
  auto p = parse_completion_request(R"({
    "model": "tiny", "prompt": "Once", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
    "top_k": 40, "seed": -3, "stop": ["\n", "", "END"], "n": 2, "stream": true,
    "stream_options": {"include_usage": true}, "logprobs": 3, "echo": true,
    "presence_penalty": 0.5, "frequency_penalty": -1, "user": "u1", "best_of": 9,
    "ignore_eos": true})");
  ASSERT_TRUE(p.ok()) << p.error().message;
  const auto& r = p.value();
  EXPECT_EQ(r.model, "tiny");
  EXPECT_EQ(std::get<std::string>(r.prompt), "Once");
  EXPECT_EQ(r.params.max_tokens, 7);
  EXPECT_DOUBLE_EQ(r.params.temperature, 0.5);
  EXPECT_DOUBLE_EQ(r.params.top_p, 0.9);
  EXPECT_EQ(r.params.top_k, 40);
  EXPECT_TRUE(r.params.ignore_eos);
  EXPECT_EQ(r.params.seed, -3);
  EXPECT_EQ(r.params.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_EQ(r.params.n, 2);
  EXPECT_TRUE(r.params.stream);
  EXPECT_TRUE(r.params.include_usage);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_TRUE(r.echo);
  EXPECT_DOUBLE_EQ(r.params.presence_penalty, 0.5);
  EXPECT_DOUBLE_EQ(r.params.frequency_penalty, -1.0);
}

TEST(CompletionRequest, DefaultsAndNullsAreAbsent) {
  auto p = parse_completion_request(
      R"({"prompt": "x", "temperature": null, "stop": null, "logprobs": null, "top_k": -1})");
  ASSERT_TRUE(p.ok()) << p.error().message;
  const auto& r = p.value();
  EXPECT_EQ(r.model, "");
  EXPECT_EQ(r.params.max_tokens, 16);
  EXPECT_DOUBLE_EQ(r.params.temperature, 1.0);
  EXPECT_EQ(r.params.top_k, 0);
  EXPECT_FALSE(r.params.seed.has_value());
  EXPECT_FALSE(r.logprobs.has_value());
  EXPECT_TRUE(r.params.stop.empty());
  EXPECT_EQ(r.params.n, 1);
  EXPECT_FALSE(r.params.stream);
  // A limit below OpenAI's default of 16 lowers the default.
  auto small = parse_completion_request(R"({"prompt": "x"})", RequestLimits{4, 0});
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small.value().params.max_tokens, 4);
}

TEST(CompletionRequest, PromptShapes) {
  auto ids = parse_completion_request(R"({"prompt": [1, 2, 3]})");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(std::get<std::vector<int32_t>>(ids.value().prompt), (std::vector<int32_t>{1, 2, 3}));
  auto one = parse_completion_request(R"({"prompt": ["hello"]})");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(std::get<std::string>(one.value().prompt), "hello");
  auto nested = parse_completion_request(R"({"prompt": [[5, 6]]})");
  ASSERT_TRUE(nested.ok());
  EXPECT_EQ(std::get<std::vector<int32_t>>(nested.value().prompt), (std::vector<int32_t>{5, 6}));

  EXPECT_EQ(completion_error(R"({"prompt": ["a", "b"]})").param, "prompt");
  EXPECT_EQ(completion_error(R"({"prompt": []})").param, "prompt");
  EXPECT_EQ(completion_error(R"({"prompt": [1, "a"]})").param, "prompt[1]");
  EXPECT_EQ(completion_error(R"({"prompt": [1, -2]})").param, "prompt[1]");
  EXPECT_EQ(completion_error(R"({"prompt": [1, 2.5]})").param, "prompt[1]");
  EXPECT_EQ(completion_error(R"({"prompt": [7]})", RequestLimits{16, 7}).param, "prompt[0]");
  EXPECT_EQ(completion_error(R"({"prompt": 5})").param, "prompt");
  ApiError missing = completion_error(R"({"model": "m"})");
  EXPECT_EQ(missing.param, "prompt");
  EXPECT_EQ(missing.code, "missing_required_parameter");
}

TEST(CompletionRequest, MalformedBodies) {
  for (const char* body : {"", "{", "{\"prompt\": \"x\",}", "[1]", "\"text\"", "null"}) {
    ApiError e = completion_error(body);
    EXPECT_EQ(e.http_status, 400) << body;
    EXPECT_EQ(e.type, "invalid_request_error") << body;
    EXPECT_EQ(e.param, "") << body;
    EXPECT_FALSE(e.message.empty()) << body;
  }
}

struct BadField {
  const char* body;
  const char* param;
  const char* code;
};

TEST(CompletionRequest, WrongTypesAndRangesNameTheField) {
  const BadField cases[] = {
      {R"({"prompt":"x","temperature":"hot"})", "temperature", "invalid_type"},
      {R"({"prompt":"x","temperature":true})", "temperature", "invalid_type"},
      {R"({"prompt":"x","temperature":2.01})", "temperature", "invalid_value"},
      {R"({"prompt":"x","temperature":-0.1})", "temperature", "invalid_value"},
      {R"({"prompt":"x","top_p":0})", "top_p", "invalid_value"},
      {R"({"prompt":"x","top_p":1.5})", "top_p", "invalid_value"},
      {R"({"prompt":"x","n":0})", "n", "invalid_value"},
      {R"({"prompt":"x","n":17})", "n", "invalid_value"},
      {R"({"prompt":"x","n":2.0})", "n", "invalid_type"},
      {R"({"prompt":"x","max_tokens":0})", "max_tokens", "invalid_value"},
      {R"({"prompt":"x","max_tokens":4097})", "max_tokens", "invalid_value"},
      {R"({"prompt":"x","max_tokens":18446744073709551615})", "max_tokens", "invalid_value"},
      {R"({"prompt":"x","seed":18446744073709551615})", "seed", "invalid_value"},
      {R"({"prompt":"x","seed":"1"})", "seed", "invalid_type"},
      {R"({"prompt":"x","stop":["a","b","c","d","e"]})", "stop", "invalid_value"},
      {R"({"prompt":"x","stop":["a",1]})", "stop[1]", "invalid_type"},
      {R"({"prompt":"x","stop":7})", "stop", "invalid_type"},
      {R"({"prompt":"x","stream":"yes"})", "stream", "invalid_type"},
      {R"({"prompt":"x","stream":true,"stream_options":{"include_usage":1}})",
       "stream_options.include_usage", "invalid_type"},
      {R"({"prompt":"x","stream_options":{"include_usage":true}})", "stream_options", ""},
      {R"({"prompt":"x","logprobs":6})", "logprobs", "invalid_value"},
      {R"({"prompt":"x","logprobs":true})", "logprobs", "invalid_type"},
      {R"({"prompt":"x","top_k":-2})", "top_k", "invalid_value"},
      {R"({"prompt":"x","presence_penalty":3})", "presence_penalty", "invalid_value"},
      {R"({"prompt":"x","model":5})", "model", "invalid_type"},
      {R"({"prompt":"x","user":[]})", "user", "invalid_type"},
  };
  for (const auto& c : cases) {
    ApiError e = completion_error(c.body);
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_EQ(e.code, c.code) << c.body;
    EXPECT_EQ(e.http_status, 400) << c.body;
    EXPECT_NE(e.message.find(c.param), std::string::npos) << e.message;
  }
}

TEST(ApiError, OpenAIShape) {
  nlohmann::json j = to_json(completion_error(R"({"prompt":"x","temperature":3})"));
  ASSERT_TRUE(j.contains("error"));
  EXPECT_EQ(j["error"]["param"], "temperature");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["code"], "invalid_value");
  EXPECT_TRUE(j["error"]["message"].is_string());
  nlohmann::json none = to_json(completion_error("{"));
  EXPECT_TRUE(none["error"]["param"].is_null());
  EXPECT_TRUE(none["error"]["code"].is_null());
}

TEST(ChatRequest, ParsesMessagesAndChatFields) {
  auto p = parse_chat_request(R"({"model": "m", "messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]},
      {"role": "assistant", "content": "Hi", "name": "bot"}],
    "max_tokens": 9, "max_completion_tokens": 5, "logprobs": true, "top_logprobs": 20})");
  ASSERT_TRUE(p.ok()) << p.error().message;
  const auto& r = p.value();
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "Be brief.");
  EXPECT_EQ(r.messages[1].content, "Hello");
  EXPECT_EQ(r.messages[2].role, "assistant");
  EXPECT_EQ(r.params.max_tokens, 5);  // max_completion_tokens wins
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 20);
  // Without max_tokens chat may run to the limit.
  auto d = parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}]})",
                              RequestLimits{300, 0});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value().params.max_tokens, 300);
}

TEST(ChatRequest, ErrorsNameTheField) {
  const BadField cases[] = {
      {R"({"model":"m"})", "messages", "missing_required_parameter"},
      {R"({"messages":[]})", "messages", ""},
      {R"({"messages":{}})", "messages", "invalid_type"},
      {R"({"messages":[1]})", "messages[0]", "invalid_type"},
      {R"({"messages":[{"content":"x"}]})", "messages[0].role", "invalid_type"},
      {R"({"messages":[{"role":"tool","content":"x"}]})", "messages[0].role", ""},
      {R"({"messages":[{"role":"user"}]})", "messages[0].content", "missing_required_parameter"},
      {R"({"messages":[{"role":"user","content":"a"},{"role":"user","content":5}]})",
       "messages[1].content", "invalid_type"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]})",
       "messages[0].content[0].type", ""},
      {R"({"messages":[{"role":"user","content":[{"type":"text"}]}]})",
       "messages[0].content[0].text", "invalid_type"},
      {R"({"messages":[{"role":"user","content":"x"}],"logprobs":1})", "logprobs",
       "invalid_type"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "top_logprobs", ""},
      {R"({"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21})",
       "top_logprobs", "invalid_value"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":0})",
       "max_completion_tokens", "invalid_value"},
  };
  for (const auto& c : cases) {
    ApiError e = chat_error(c.body);
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_EQ(e.code, c.code) << c.body;
    EXPECT_NE(e.message.find(c.param), std::string::npos) << e.message;
  }
}

}  // namespace
}  // namespace tandem::serve
