// Whole responses, stream chunks and the model list, in OpenAI's shapes.
#include <tandem/serve/response.hpp>

#include <tandem/serve/api_error.hpp>

namespace tandem::serve {

using nlohmann::json;

namespace {

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json head(const ResponseMeta& m, std::string_view object) {
  return {{"id", m.id}, {"object", object}, {"created", m.created}, {"model", m.model}};
}

json finish_json(const Choice& c) {
  return c.finish ? json(finish_reason_name(*c.finish)) : json(nullptr);
}

json completion_choice(const Choice& c) {
  return {{"index", c.index},
          {"text", c.text},
          {"logprobs", c.logprobs ? completion_logprobs(*c.logprobs, c.text_offset) : json()},
          {"finish_reason", finish_json(c)}};
}

json chat_choice_logprobs(const Choice& c) {
  return c.logprobs ? chat_logprobs(*c.logprobs) : json(nullptr);
}

json chunk_head(const StreamOptions& s, std::string_view object) {
  json j = head(s.meta, object);
  if (s.include_usage) j["usage"] = nullptr;
  return j;
}

json byte_list(std::string_view s) {
  json a = json::array();
  for (char ch : s) a.push_back(static_cast<unsigned char>(ch));
  return a;
}

}  // namespace

std::string_view finish_reason_name(FinishReason r) {
  return r == FinishReason::Stop ? "stop" : "length";
}

json completion_logprobs(const std::vector<TokenLogprob>& lp, size_t text_offset) {
  json tokens = json::array(), token_lp = json::array(), top = json::array(),
       offsets = json::array();
  for (const auto& t : lp) {
    tokens.push_back(t.token);
    token_lp.push_back(t.logprob);
    json alts = json::object();
    for (const auto& [tok, p] : t.top) alts[tok] = p;
    top.push_back(std::move(alts));
    offsets.push_back(text_offset);
    text_offset += t.token.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_lp},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

json chat_logprobs(const std::vector<TokenLogprob>& lp) {
  json content = json::array();
  for (const auto& t : lp) {
    json alts = json::array();
    for (const auto& [tok, p] : t.top)
      alts.push_back({{"token", tok}, {"logprob", p}, {"bytes", byte_list(tok)}});
    content.push_back({{"token", t.token},
                       {"logprob", t.logprob},
                       {"bytes", byte_list(t.token)},
                       {"top_logprobs", alts}});
  }
  return {{"content", content}};
}

json completion_response(const ResponseMeta& m, const std::vector<Choice>& choices,
                         const Usage& u) {
  json j = head(m, "text_completion");
  j["choices"] = json::array();
  for (const auto& c : choices) j["choices"].push_back(completion_choice(c));
  j["usage"] = usage_json(u);
  return j;
}

json chat_response(const ResponseMeta& m, const std::vector<Choice>& choices, const Usage& u) {
  json j = head(m, "chat.completion");
  j["choices"] = json::array();
  for (const auto& c : choices) {
    j["choices"].push_back({{"index", c.index},
                            {"message", {{"role", "assistant"}, {"content", c.text}}},
                            {"logprobs", chat_choice_logprobs(c)},
                            {"finish_reason", finish_json(c)}});
  }
  j["usage"] = usage_json(u);
  return j;
}

json completion_chunk(const StreamOptions& s, const Choice& c) {
  json j = chunk_head(s, "text_completion");
  j["choices"] = json::array({completion_choice(c)});
  return j;
}

json chat_role_chunk(const StreamOptions& s, int index) {
  json j = chunk_head(s, "chat.completion.chunk");
  j["choices"] = json::array({{{"index", index},
                               {"delta", {{"role", "assistant"}, {"content", ""}}},
                               {"logprobs", nullptr},
                               {"finish_reason", nullptr}}});
  return j;
}

json chat_chunk(const StreamOptions& s, const Choice& c) {
  json j = chunk_head(s, "chat.completion.chunk");
  json delta = json::object();
  if (!c.finish || !c.text.empty()) delta["content"] = c.text;
  j["choices"] = json::array({{{"index", c.index},
                               {"delta", delta},
                               {"logprobs", chat_choice_logprobs(c)},
                               {"finish_reason", finish_json(c)}}});
  return j;
}

json usage_chunk(const StreamOptions& s, std::string_view object, const Usage& u) {
  json j = head(s.meta, object);
  j["choices"] = json::array();
  j["usage"] = usage_json(u);
  return j;
}

std::string sse_event(const json& j) { return "data: " + dump_json(j) + "\n\n"; }

std::string sse_done() { return "data: [DONE]\n\n"; }

json models_list(const std::vector<ModelCard>& models) {
  json data = json::array();
  for (const auto& m : models) {
    data.push_back(
        {{"id", m.id}, {"object", "model"}, {"created", m.created}, {"owned_by", m.owned_by}});
  }
  return {{"object", "list"}, {"data", data}};
}

}  // namespace tandem::serve
