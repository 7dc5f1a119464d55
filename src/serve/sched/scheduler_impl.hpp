#pragma once
// The scheduler's state (scheduler.hpp): requests, the queue, the active sequences, the
// engine thread's loop (scheduler.cpp) and its batched step (step.cpp).
//
// Threads: submit/cancel/stats/shutdown take `m`; the queue (`waiting`), the cancel
// list, the flags and the published stats are guarded by it. Everything else (the
// active sequences, the KV pool, the prefix cache, the counters) belongs to the engine
// thread, which takes `m` for admission and cancellation and releases it for the
// forward step and every sink call.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "serve/prefix_cache.hpp"
#include "tandem/memory/kv_cache.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/sampler.hpp"
#include "tandem/serve/scheduler.hpp"

namespace tandem::serve {

using Clock = std::chrono::steady_clock;

struct Request {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // the prompt, then every token sampled
  GenParams p;
  std::shared_ptr<SequenceSink> sink;
  Sampler sampler;
  SequenceStats st;
  Clock::time_point submitted;
  bool admitted_once = false;
  // While active: the sequence's KV and how many of `tokens` it holds.
  std::optional<KVCache> cache;
  int64_t computed = 0;
  int64_t shared_pages = 0;  // full pages handed to the prefix cache so far
  uint64_t order = 0;  // admission order (preemption takes the newest)
  std::vector<int32_t> pos;
  std::vector<float> logits;

  Request(const GenParams& g, std::shared_ptr<SequenceSink> s)
      : p(g), sink(std::move(s)),
        sampler(SamplerParams{g.temperature, g.top_k, g.top_p, g.seed}) {}
};

// A finish to report once the stats are published and no lock is held.
struct Done {
  std::shared_ptr<SequenceSink> sink;
  Finish why = Finish::Error;
  SequenceStats st;
  std::string error;
};

struct Scheduler::Impl {
  Impl(Engine& e, const SchedulerOptions& o, std::vector<int32_t> eos);

  // scheduler.cpp: the engine thread.
  void run();
  void process_cancels(std::vector<Done>& done);  // under m
  void cancel_all(std::vector<Done>& done);       // under m
  void admit(std::vector<Done>& done);            // under m
  void publish();                                 // under m
  static void deliver(std::vector<Done>& done);
  // step.cpp: one batched forward step of the active sequences.
  void step(std::vector<Done>& done);
  void emit(Request& r, std::vector<Done>& done);
  // Ends r: keeps its full pages in the prefix cache (keep_pages), frees the rest,
  // counts it and queues its on_finish; r is removed from `active`.
  void finish(Request& r, Finish why, std::string error, std::vector<Done>& done,
              bool keep_pages = true);
  // Releases r's pages (full ones kept in the prefix cache when it is on).
  void release(Request& r, bool keep_pages);
  void preempt(Request& r);
  int64_t pages_for(int64_t tokens) const { return (tokens + page - 1) / page; }

  Engine& engine;
  const SchedulerOptions o;
  const std::vector<int32_t> eos;
  int64_t vocab = 0, page = 0;
  std::shared_ptr<PagedKVCache> pool;
  std::unique_ptr<PrefixCache> prefix;

  mutable std::mutex m;
  std::condition_variable cv;        // wakes the engine thread
  std::condition_variable cleared;   // clear_prefix_cache() waits on it
  bool kick = false;                 // something for the engine thread to look at
  std::deque<std::unique_ptr<Request>> waiting;
  std::vector<uint64_t> cancels;
  bool stopping = false, running = false, clear_requested = false;
  Clock::time_point deadline;
  uint64_t next_id = 1;
  SchedulerStats snap;               // published by the engine thread
  int64_t refused = 0;               // requests failed in submit (never queued)
  std::thread thread;
  std::mutex join_m;

  std::vector<std::unique_ptr<Request>> active;  // engine thread
  SchedulerStats count;                          // engine thread's counters
  uint64_t next_order = 0;
  std::vector<BatchItem> items;
  std::vector<Request*> rows_of;
};

}  // namespace tandem::serve
