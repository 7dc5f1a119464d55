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
class SpLane;
class Scheduler;

// Where sequences run: the batching scheduler, and under --sp the sequence-parallel lane
// for long prompts (null otherwise).
struct Lanes {
  Scheduler& batch;
  SpLane* sp = nullptr;
  int64_t batch_ctx = 0;  // prompt + output tokens of one batched sequence
  // Whether a prompt of n tokens goes to the sequence-parallel lane: long enough for it,
  // or too long for one batched sequence.
  bool to_sp(int64_t n) const;
  std::optional<uint64_t> submit(bool sp, std::vector<int32_t> prompt, const GenParams& p,
                                 std::shared_ptr<SequenceSink> sink);
  void cancel(bool sp, uint64_t id);
};

enum class Endpoint { Completions, Chat };

struct Generation {
  Endpoint endpoint = Endpoint::Completions;
  ResponseMeta meta;
  std::vector<int32_t> prompt;
  SamplingParams params;
  int top_logprobs = -1;  // -1: none
  std::vector<std::shared_ptr<HttpSink>> sinks;
  std::vector<uint64_t> ids;
  bool sp = false;  // its sequences run in the sequence-parallel lane
};

// Submits every choice; on a full queue cancels those already in and returns a 503.
std::optional<ApiError> submit(Generation& g, Lanes& lanes, const Tokenizer& tok, Metrics& m);
// Waits for every choice and writes the whole response (or the error of a failed one).
void respond_whole(Generation& g, httplib::Response& res);
// Streams the choices as they come; cancels them when the client leaves.
void respond_stream(const std::shared_ptr<Generation>& g, Lanes& lanes, httplib::Response& res);

void send_error(httplib::Response& res, const ApiError& e);

}  // namespace tandem::serve
