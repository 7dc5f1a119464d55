// Response objects, stream chunks and SSE framing in OpenAI's shapes.
#include <gtest/gtest.h>
#include <tandem/serve/api_error.hpp>
#include <tandem/serve/response.hpp>

namespace tandem::serve {
namespace {

using nlohmann::json;

const ResponseMeta kMeta{"cmpl-1", 1700000000, "tiny"};

std::vector<TokenLogprob> two_tokens() {
  return {{"Hel", -0.5, {{"Hel", -0.5}, {"Hi", -1.5}}}, {"lo", -0.25, {{"lo", -0.25}}}};
}

TEST(Response, Completion) {
  Choice c{0, "Hello", FinishReason::Length, std::nullopt, 0};
  json j = completion_response(kMeta, {c}, Usage{3, 2});
  EXPECT_EQ(j["id"], "cmpl-1");
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "tiny");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["text"], "Hello");
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(j["usage"], json({{"prompt_tokens", 3}, {"completion_tokens", 2},
                              {"total_tokens", 5}}));
}

TEST(Response, CompletionLogprobs) {
  json lp = completion_logprobs(two_tokens(), 10);
  EXPECT_EQ(lp["tokens"], json({"Hel", "lo"}));
  EXPECT_EQ(lp["token_logprobs"], json({-0.5, -0.25}));
  EXPECT_EQ(lp["top_logprobs"][0], json({{"Hel", -0.5}, {"Hi", -1.5}}));
  EXPECT_EQ(lp["text_offset"], json({10, 13}));
}

TEST(Response, ChatWithLogprobs) {
  Choice c{1, "Hello", FinishReason::Stop, two_tokens(), 0};
  json j = chat_response(kMeta, {c}, Usage{4, 2});
  EXPECT_EQ(j["object"], "chat.completion");
  const json& ch = j["choices"][0];
  EXPECT_EQ(ch["index"], 1);
  EXPECT_EQ(ch["message"], json({{"role", "assistant"}, {"content", "Hello"}}));
  EXPECT_EQ(ch["finish_reason"], "stop");
  const json& first = ch["logprobs"]["content"][0];
  EXPECT_EQ(first["token"], "Hel");
  EXPECT_EQ(first["logprob"], -0.5);
  EXPECT_EQ(first["bytes"], json({72, 101, 108}));
  EXPECT_EQ(first["top_logprobs"][1], json({{"token", "Hi"}, {"logprob", -1.5},
                                            {"bytes", json({72, 105})}}));
  EXPECT_EQ(j["usage"]["total_tokens"], 6);
}

TEST(Response, ChatStreamSequence) {
  StreamOptions s{{"chatcmpl-9", 5, "tiny"}, true};
  json role = chat_role_chunk(s, 0);
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(role["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(role.contains("usage") && role["usage"].is_null());

  json text = chat_chunk(s, Choice{0, "Hi", std::nullopt, std::nullopt, 0});
  EXPECT_EQ(text["choices"][0]["delta"], json({{"content", "Hi"}}));
  EXPECT_TRUE(text["choices"][0]["finish_reason"].is_null());

  json last = chat_chunk(s, Choice{0, "", FinishReason::Stop, std::nullopt, 0});
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");

  json usage = usage_chunk(s, "chat.completion.chunk", Usage{2, 1});
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_EQ(usage["usage"]["total_tokens"], 3);
  EXPECT_EQ(usage["id"], "chatcmpl-9");

  StreamOptions plain{{"chatcmpl-9", 5, "tiny"}, false};
  EXPECT_FALSE(chat_role_chunk(plain, 0).contains("usage"));
}

TEST(Response, CompletionChunk) {
  StreamOptions s{kMeta, false};
  json j = completion_chunk(s, Choice{0, " wor", std::nullopt, std::nullopt, 0});
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], " wor");
  EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
}

TEST(Response, SseFraming) {
  EXPECT_EQ(sse_event(json({{"a", 1}})), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  // A token that is half a UTF-8 character is replaced, not thrown on.
  EXPECT_EQ(sse_event(json({{"t", "\xE2\x82"}})), "data: {\"t\":\"\xEF\xBF\xBD\"}\n\n");
}

TEST(Response, ModelsList) {
  json j = models_list({{"tiny", 42, "tandem"}});
  EXPECT_EQ(j, json({{"object", "list"},
                     {"data", json::array({{{"id", "tiny"}, {"object", "model"},
                                            {"created", 42}, {"owned_by", "tandem"}}})}}));
}

}  // namespace
}  // namespace tandem::serve
