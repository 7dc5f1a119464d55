#pragma once
// One HTTP request's generation: its n choices submitted to the scheduler as sequences,
// answered whole or streamed as server-sent events.
#include <httplib.h>

#include <memory>
#include <vector>

#include "http_sink.hpp"
#include "tandem/serve/api_error.hpp"
#include "tandem/serve/request.hpp"
#include "tandem/serve/response.hpp"

namespace tandem::serve {

class Metrics;

enum class Endpoint { Completions, Chat };

struct Generation {
  Endpoint endpoint = Endpoint::Completions;
  ResponseMeta meta;
  std::vector<int32_t> prompt;
  SamplingParams params;
  int top_logprobs = -1;  // -1: none
  std::vector<std::shared_ptr<HttpSink>> sinks;
  std::vector<uint64_t> ids;
};

// Submits every choice; on a full queue cancels those already in and returns a 503.
std::optional<ApiError> submit(Generation& g, Scheduler& sched, const Tokenizer& tok, Metrics& m);
// Waits for every choice and writes the whole response (or the error of a failed one).
void respond_whole(Generation& g, httplib::Response& res);
// Streams the choices as they come; cancels them when the client leaves.
void respond_stream(const std::shared_ptr<Generation>& g, Scheduler& sched, httplib::Response& res);

void send_error(httplib::Response& res, const ApiError& e);

}  // namespace tandem::serve
