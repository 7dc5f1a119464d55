#pragma once
// Request bodies of POST /v1/completions and /v1/chat/completions, parsed and validated the
// way OpenAI's API does: malformed JSON, a known field of the wrong type and an out-of-range
// value give an ApiError naming the field; unknown fields are ignored; null counts as absent.
// The parsers never throw, whatever the body.
#include <tandem/serve/api_error.hpp>
#include <tandem/serve/chat_template.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tandem::serve {

// What the server allows, given by its caller.
struct RequestLimits {
  int max_tokens = 4096;    // the largest max_tokens accepted (e.g. the context length)
  int64_t vocab_size = 0;   // prompt token ids must be below it; 0: not checked
};

// Options shared by both endpoints.
struct SamplingParams {
  // Tokens to generate at most. Absent: 16 for completions (OpenAI's default), the limit
  // for chat.
  int max_tokens = 16;
  double temperature = 1.0;  // 0..2; 0 is greedy
  double top_p = 1.0;        // (0, 1]
  int top_k = 0;             // an extension (llama.cpp, vLLM); 0 is off (-1 is taken as 0)
  bool ignore_eos = false;   // an extension (llama.cpp, vLLM): generate past end-of-sequence
  std::optional<int64_t> seed;
  std::vector<std::string> stop;  // at most 4, empty strings dropped
  int n = 1;                      // choices, 1..16
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage (only with stream)
  double presence_penalty = 0.0;  // -2..2, recorded; the sampler may support only 0
  double frequency_penalty = 0.0;  // -2..2, recorded
};

// A prompt as text or as token ids.
using Prompt = std::variant<std::string, std::vector<int32_t>>;

struct CompletionRequest {
  std::string model;  // "" when absent: the served model
  Prompt prompt;
  SamplingParams params;
  std::optional<int> logprobs;  // top alternatives per token, 0..5; absent: no logprobs
  bool echo = false;            // recorded: the prompt prepended to the text
};

struct ChatRequest {
  std::string model;
  std::vector<ChatMessage> messages;  // role "developer" is stored as "system"
  SamplingParams params;
  bool logprobs = false;
  int top_logprobs = 0;  // 0..20, only with logprobs
};

Parsed<CompletionRequest> parse_completion_request(std::string_view body,
                                                   const RequestLimits& limits = {});
Parsed<ChatRequest> parse_chat_request(std::string_view body, const RequestLimits& limits = {});

}  // namespace tandem::serve
