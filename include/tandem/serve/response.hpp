#pragma once
// Response bodies in OpenAI's shapes: whole responses (text_completion, chat.completion),
// stream chunks (text_completion, chat.completion.chunk) framed as server-sent events, and
// the model list of GET /v1/models.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem::serve {

enum class FinishReason { Stop, Length };
std::string_view finish_reason_name(FinishReason r);  // "stop", "length"

struct ResponseMeta {
  std::string id;       // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

// One sampled token: its text (raw bytes, possibly part of a UTF-8 character), its log
// probability and the most likely alternatives at its position, best first.
struct TokenLogprob {
  std::string token;
  double logprob = 0.0;
  std::vector<std::pair<std::string, double>> top;
};

struct Choice {
  int index = 0;
  std::string text;
  std::optional<FinishReason> finish;  // absent in chunks before the last
  std::optional<std::vector<TokenLogprob>> logprobs;  // absent: "logprobs": null
  size_t text_offset = 0;  // completions: where the first token's text starts
};

// Completions' logprobs object: tokens, token_logprobs, top_logprobs, text_offset.
nlohmann::json completion_logprobs(const std::vector<TokenLogprob>& lp, size_t text_offset);
// Chat's logprobs object: {"content": [{token, logprob, bytes, top_logprobs}]}.
nlohmann::json chat_logprobs(const std::vector<TokenLogprob>& lp);

// Whole responses.
nlohmann::json completion_response(const ResponseMeta& m, const std::vector<Choice>& choices,
                                   const Usage& u);
nlohmann::json chat_response(const ResponseMeta& m, const std::vector<Choice>& choices,
                             const Usage& u);

// Stream chunks. With include_usage every chunk carries "usage": null and usage_chunk gives
// the final one (empty choices, the usage).
struct StreamOptions {
  ResponseMeta meta;
  bool include_usage = false;
};
// text_completion chunk: the choice's text so far released, finish_reason when last.
nlohmann::json completion_chunk(const StreamOptions& s, const Choice& c);
// chat.completion.chunk: delta {"role": "assistant", "content": ""} (first of each choice).
nlohmann::json chat_role_chunk(const StreamOptions& s, int index);
// chat.completion.chunk: delta {"content": text} with logprobs when given, or, when
// c.finish is set, the last chunk of the choice (delta {} and finish_reason).
nlohmann::json chat_chunk(const StreamOptions& s, const Choice& c);
// The usage chunk of either endpoint (object "text_completion" or "chat.completion.chunk").
nlohmann::json usage_chunk(const StreamOptions& s, std::string_view object, const Usage& u);

// Server-sent events framing: "data: <json>\n\n", and the end of a stream "data: [DONE]\n\n".
std::string sse_event(const nlohmann::json& j);
std::string sse_done();

// GET /v1/models.
struct ModelCard {
  std::string id;
  int64_t created = 0;
  std::string owned_by = "tandem";
};
nlohmann::json models_list(const std::vector<ModelCard>& models);

}  // namespace tandem::serve
