#pragma once
// The sequence-parallel lane of `tandem serve` under mpirun (or --ranks P): long prompts
// are served by every rank together. Rank 0 serves HTTP and batches short prompts on its
// own (Scheduler); a prompt routed here is prefilled by all ranks with the session's
// scheme and decoded against the KV cache sharded across them (Session::prefill,
// Session::decode_step), one request at a time. Each rank holds only its shard of the
// sequence's KV, so a prompt too long for one rank's pool is served here.
//
// Protocol (world communicator, used by the lane's thread on rank 0 and by sp_follow on
// the others): rank 0 sends every other rank a command: Idle (a heartbeat, at least every
// heartbeat_s while nothing runs), Run (then the prompt is broadcast, prefilled together,
// and for every token rank 0 broadcasts the sampled id and whether the sequence goes on,
// the ranks then running its decode step together) or Stop. Only rank 0 samples: the
// others compute with the ids it sends. A rank that hears nothing from rank 0 for the
// communicator's timeout fails with Error(Comm), as every wait does.
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "tandem/serve/scheduler.hpp"

namespace tandem {
class Session;
}

namespace tandem::serve {

struct SpLaneOptions {
  // Prompts of at least this many tokens go to the lane (the server also sends it those
  // the batching scheduler cannot hold).
  int64_t min_tokens = 4096;
  // KV tokens one rank may hold of the lane's sequence (its --kv-pool): a sequence is
  // admitted when every rank's share of prompt + max_tokens fits (max_tokens is cut to
  // what fits, as a full context ends a batched sequence).
  int64_t rank_kv_tokens = 0;
  int queue_limit = 256;
  double heartbeat_s = 2.0;
};

struct SpLaneStats {
  int64_t queued = 0, active = 0;
  int64_t requests = 0;  // sequences run (finished, cancelled or failed)
  int64_t finished = 0, cancelled = 0, failed = 0;
  int64_t prompt_tokens = 0, output_tokens = 0;
  double last_prefill_s = 0;  // the last prompt's prefill across the ranks
};

class SpLane {
 public:
  // Rank 0 of the session's communicator (the other ranks run sp_follow). The session
  // is used from the lane's thread only, once started.
  SpLane(Session& session, const SpLaneOptions& o, std::vector<int32_t> eos);
  ~SpLane();
  SpLane(const SpLane&) = delete;
  SpLane& operator=(const SpLane&) = delete;

  const SpLaneOptions& options() const;
  int ranks() const;
  // Whether a prompt of n tokens belongs here (n >= min_tokens).
  bool takes(int64_t n) const { return n >= options().min_tokens; }
  // The longest prompt the ranks can hold together (with one output token).
  int64_t max_prompt_tokens() const;

  // As Scheduler::submit: thread-safe; nullopt when the queue is full or the lane has
  // stopped; a request that cannot run finishes at once with Finish::Error.
  std::optional<uint64_t> submit(std::vector<int32_t> prompt, const GenParams& p,
                                 std::shared_ptr<SequenceSink> sink);
  // Ends a request within one decode step (a prefill in progress completes first).
  void cancel(uint64_t id);
  void start();
  // Stops admitting, lets requests finish until deadline_s has passed, cancels the rest,
  // tells the other ranks to stop and joins the lane's thread. Idempotent.
  void shutdown(double deadline_s);
  SpLaneStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The other ranks: runs rank 0's long prompts with it until it sends Stop. Collective
// with SpLane on rank 0.
void sp_follow(Session& session);

}  // namespace tandem::serve
