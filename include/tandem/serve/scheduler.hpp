#pragma once
// The continuous-batching scheduler of `tandem serve`. Requests (token ids and sampling
// settings) are submitted from any thread; one engine thread runs steps: every step
// admits waiting requests while the KV pool and --parallel allow, then runs ONE batched
// forward (Engine::forward_batch) holding every active sequence's decode token plus
// chunks of waiting prompts up to a per-step token budget (chunked prefill interleaved
// with decode), samples, and reports each new token to the request's sink.
//
// Prefix caching: full KV pages are kept after their sequence ends, keyed by the hash
// of every token up to and including them; a new request starts from the cached pages
// of its longest matching prefix and prefills only the rest. Unreferenced cached pages
// are evicted least-recently-used when the pool needs them. When the pool runs out
// mid-decode the newest sequences are preempted (their pages freed, their prompt and
// tokens so far recomputed when they are readmitted), never failed (only a sequence
// alone in the pool that needs one more page ends, with Finish::Length).
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace tandem {
class Engine;
class Model;
}  // namespace tandem

namespace tandem::serve {

struct SchedulerOptions {
  int parallel = 4;              // sequences decoding at once, at most
  int64_t ctx_size = 4096;       // prompt + output tokens of one sequence, at most
  int64_t kv_pool_tokens = 0;    // tokens the shared KV pool holds (0: parallel * ctx_size)
  int64_t page_tokens = 16;      // tokens per KV page
  int64_t step_tokens = 512;     // tokens one forward step runs, at most (decode + prefill chunks)
  int queue_limit = 256;         // requests waiting, at most (submit refuses past it)
  bool prefix_cache = true;
};

struct GenParams {
  int max_tokens = 16;           // output tokens, at most
  float temperature = 0.0f;      // <= 0: greedy
  float top_p = 1.0f;
  int top_k = 0;                 // 0: off
  uint64_t seed = 0;
  bool ignore_eos = false;       // keep going past the end-of-sequence token
  int top_logprobs = -1;         // -1: no logprobs; 0..20: the chosen token's and this many alternatives
};

// One generated token as the sink receives it.
struct TokenEvent {
  int32_t token = 0;
  float logprob = 0.0f;                           // log-softmax of the chosen token (when asked)
  std::vector<std::pair<int32_t, float>> top;     // the top_logprobs most likely, best first
};

enum class Finish { Stop, Length, Cancelled, Error };

struct SequenceStats {
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;     // prompt tokens found in the prefix cache (not recomputed)
  int64_t output_tokens = 0;
  double queued_s = 0;           // from submit to admission
  double first_token_s = 0;      // from submit to the first token
  int preemptions = 0;
};

// Where a request's tokens go. Called on the engine thread (no scheduler lock held: it
// may call cancel() or stats(), not shutdown() or clear_prefix_cache()); keep it short.
// An end-of-sequence token ends the request with Finish::Stop and is not passed to
// on_token nor counted in output_tokens.
class SequenceSink {
 public:
  virtual ~SequenceSink() = default;
  // A new token. Return false to end the sequence now (a stop string matched, or the
  // client left): it then finishes with Finish::Stop (stop string) or Cancelled, as
  // the sink says through `stopped_by_text`.
  virtual bool on_token(const TokenEvent& t) = 0;
  virtual bool stopped_by_text() const { return false; }
  // The end: exactly once per submitted request. `error` is set with Finish::Error.
  virtual void on_finish(Finish why, const SequenceStats& st, const std::string& error) = 0;
};

// What every lane refuses in a request whatever its length: an empty prompt, a token id
// outside [0, vocab), max_tokens < 1, top_logprobs outside [-1, 20]. The message, or ""
// when none applies.
std::string request_error(std::span<const int32_t> prompt, const GenParams& p, int64_t vocab);

// One sampled token of a sequence, reported as every lane of the server reports it (the
// batching scheduler and the sequence-parallel lane): an end-of-sequence token (unless
// ignore_eos) ends the sequence with Stop and is not passed on; any other is counted in
// st (first_token_s = elapsed_s for the first), its logprobs taken from `row` when asked,
// and given to the sink. Returns how the sequence ends (the sink says stop, a sink that
// throws is an Error with `error` set, or max_tokens is reached), nullopt while it goes on.
std::optional<Finish> report_token(std::span<const float> row, int32_t token, const GenParams& p,
                                   std::span<const int32_t> eos, SequenceSink& sink,
                                   SequenceStats& st, double elapsed_s, std::string& error);

struct SchedulerStats {
  int64_t queued = 0;            // waiting for admission
  int64_t active = 0;            // admitted (prefilling or decoding)
  int64_t kv_pages_total = 0, kv_pages_used = 0, kv_pages_cached = 0;  // cached: held only by the prefix cache
  int64_t last_batch_sequences = 0, last_batch_tokens = 0;
  int64_t steps = 0;
  int64_t prompt_tokens = 0, cached_prompt_tokens = 0, output_tokens = 0;  // totals
  int64_t prefix_hits = 0;       // requests that reused at least one cached page
  int64_t preemptions = 0;
  int64_t finished = 0, cancelled = 0, failed = 0;  // finished: Stop or Length
};

class Scheduler {
 public:
  // engine: built on model, single rank (forward_batch); it is used from the engine
  // thread only. eos: the end-of-sequence token ids (the tokenizer's).
  Scheduler(Engine& engine, const SchedulerOptions& o, std::vector<int32_t> eos);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Thread-safe. Queues a request; returns its id, or nullopt when the queue is full
  // (the server answers 503). A prompt that can never fit (empty, longer than ctx_size
  // - 1, or than the pool) finishes at once with Finish::Error and a message naming
  // the limit (the server checks lengths first and answers 400); so do a token id
  // outside the vocabulary, max_tokens < 1 and top_logprobs outside [-1, 20]. That
  // on_finish runs on the calling thread, before submit returns the id. After
  // shutdown() submit returns nullopt (nothing is called).
  std::optional<uint64_t> submit(std::vector<int32_t> prompt, const GenParams& p,
                                 std::shared_ptr<SequenceSink> sink);
  // Thread-safe. Ends a request (queued or active) within one step: Finish::Cancelled.
  void cancel(uint64_t id);

  // Starts the engine thread (run() on a thread of its own).
  void start();
  // Stops admitting; lets active and queued requests finish until `deadline_s` has
  // passed, then cancels the rest, and joins the engine thread. Idempotent.
  void shutdown(double deadline_s);

  // Thread-safe. Drops every page the prefix cache holds (pages in use stay with their
  // sequences); returns once they are back in the pool.
  void clear_prefix_cache();

  SchedulerStats stats() const;  // thread-safe snapshot
  const SchedulerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::serve
