#include "tandem/serve/scheduler.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "serve/scheduler_impl.hpp"
#include "tandem/core/error.hpp"

namespace tandem::serve {

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

std::string request_error(std::span<const int32_t> prompt, const GenParams& p, int64_t vocab) {
  if (prompt.empty()) return "the prompt is empty (no tokens)";
  if (p.max_tokens < 1) return fmt::format("max_tokens must be >= 1 (got {})", p.max_tokens);
  if (p.top_logprobs < -1 || p.top_logprobs > 20)
    return fmt::format("top_logprobs must be in [0, 20] or -1 (got {})", p.top_logprobs);
  for (int32_t t : prompt)
    if (t < 0 || t >= vocab) return fmt::format("token id {} is outside the vocabulary [0, {})", t, vocab);
  return {};
}

Scheduler::Impl::Impl(Engine& e, const SchedulerOptions& opt, std::vector<int32_t> eos_ids)
    : engine(e), o(opt), eos(std::move(eos_ids)) {
  if (o.parallel < 1) bad_input("scheduler: parallel must be >= 1 (got {})", o.parallel);
  if (o.ctx_size < 2) bad_input("scheduler: ctx_size must be >= 2 (got {})", o.ctx_size);
  if (o.page_tokens < 1) bad_input("scheduler: page_tokens must be >= 1 (got {})", o.page_tokens);
  if (o.step_tokens < 1) bad_input("scheduler: step_tokens must be >= 1 (got {})", o.step_tokens);
  if (o.queue_limit < 0) bad_input("scheduler: queue_limit must be >= 0 (got {})", o.queue_limit);
  if (o.kv_pool_tokens < 0)
    bad_input("scheduler: kv_pool_tokens must be >= 0 (got {})", o.kv_pool_tokens);
  vocab = engine.model().hparams().n_vocab;
  page = o.page_tokens;
  KVCacheOptions kv = engine.options().kv;
  kv.page_tokens = o.page_tokens;
  kv.pool_tokens = 0;
  pool = engine.make_pool(o.kv_pool_tokens > 0 ? o.kv_pool_tokens : o.parallel * o.ctx_size, kv);
  prefix = std::make_unique<PrefixCache>(pool);
  publish();
}

Scheduler::Scheduler(Engine& engine, const SchedulerOptions& o, std::vector<int32_t> eos)
    : impl_(std::make_unique<Impl>(engine, o, std::move(eos))) {}

Scheduler::~Scheduler() { shutdown(0); }

const SchedulerOptions& Scheduler::options() const { return impl_->o; }

std::optional<uint64_t> Scheduler::submit(std::vector<int32_t> prompt, const GenParams& p,
                                          std::shared_ptr<SequenceSink> sink) {
  Impl& s = *impl_;
  auto r = std::make_unique<Request>(p, std::move(sink));
  r->tokens = std::move(prompt);
  r->st.prompt_tokens = int64_t(r->tokens.size());
  r->submitted = Clock::now();
  // A request that can never run finishes at once.
  const int64_t n = int64_t(r->tokens.size());
  std::string error = request_error(r->tokens, p, s.vocab);
  if (!error.empty()) {
  } else if (n > s.o.ctx_size - 1) {
    error = fmt::format("the prompt has {} tokens, more than ctx_size - 1 = {} (ctx_size {})", n,
                        s.o.ctx_size - 1, s.o.ctx_size);
  } else if (s.pages_for(n) > s.pool->n_blocks()) {
    error = fmt::format("the prompt has {} tokens, more than the KV pool holds ({} tokens)", n,
                        s.pool->n_blocks() * s.page);
  }
  std::unique_lock lk(s.m);
  if (s.stopping) return std::nullopt;
  if (error.empty() && int64_t(s.waiting.size()) >= s.o.queue_limit) return std::nullopt;
  const uint64_t id = s.next_id++;
  r->id = id;
  if (!error.empty()) {
    ++s.refused;
    lk.unlock();
    std::vector<Done> done{{r->sink, Finish::Error, r->st, error}};
    Impl::deliver(done);
    return id;
  }
  s.waiting.push_back(std::move(r));
  s.kick = true;
  s.cv.notify_one();
  return id;
}

void Scheduler::cancel(uint64_t id) {
  std::lock_guard lk(impl_->m);
  impl_->cancels.push_back(id);
  impl_->kick = true;
  impl_->cv.notify_one();
}

void Scheduler::start() {
  std::lock_guard lk(impl_->m);
  if (impl_->running || impl_->stopping) return;
  impl_->running = true;
  impl_->thread = std::thread([this] { impl_->run(); });
}

void Scheduler::shutdown(double deadline_s) {
  Impl& s = *impl_;
  std::lock_guard join_lk(s.join_m);
  std::vector<Done> done;
  {
    std::lock_guard lk(s.m);
    if (!s.stopping) {
      s.stopping = true;
      s.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(std::max(deadline_s, 0.0)));
    }
    s.kick = true;
    s.cv.notify_one();
    // Never started: nothing runs the queue, so it is cancelled here.
    if (!s.running && !s.thread.joinable()) {
      s.cancel_all(done);
      s.publish();
    }
  }
  if (s.thread.joinable()) s.thread.join();
  Impl::deliver(done);
}

void Scheduler::clear_prefix_cache() {
  Impl& s = *impl_;
  std::unique_lock lk(s.m);
  if (!s.running) {
    s.prefix->clear();
    s.publish();
    return;
  }
  s.clear_requested = true;
  s.kick = true;
  s.cv.notify_one();
  s.cleared.wait(lk, [&] { return !s.clear_requested; });
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lk(impl_->m);
  SchedulerStats st = impl_->snap;
  st.queued = int64_t(impl_->waiting.size());
  st.failed += impl_->refused;
  return st;
}

// ---- the engine thread ----

void Scheduler::Impl::run() {
  std::unique_lock lk(m);
  for (;;) {
    kick = false;
    std::vector<Done> done;
    process_cancels(done);
    if (stopping && Clock::now() >= deadline) cancel_all(done);
    if (clear_requested) {
      prefix->clear();
      clear_requested = false;
      cleared.notify_all();
    }
    admit(done);
    publish();
    lk.unlock();
    deliver(done);
    bool freed = false;  // a finish or a preemption: the queue's head may fit now
    if (!active.empty()) {
      const size_t before = active.size();
      try {
        step(done);
      } catch (const std::exception& e) {
        // Not the forward pass (step() reports its errors per request): an internal
        // failure. Every active request ends with it rather than the process.
        while (!active.empty()) finish(*active.back(), Finish::Error, e.what(), done, false);
      }
      freed = active.size() < before;
      lk.lock();
      publish();
      lk.unlock();
      deliver(done);
    }
    lk.lock();
    if (!active.empty() || kick || freed) continue;
    if (stopping && waiting.empty()) break;
    // Idle (or the queue's head waits for pages that only a finish can free): sleep.
    if (stopping)
      cv.wait_until(lk, deadline, [&] { return kick; });
    else
      cv.wait(lk, [&] { return kick; });
  }
  running = false;
  if (clear_requested) {
    prefix->clear();
    clear_requested = false;
    cleared.notify_all();
  }
  publish();
}

void Scheduler::Impl::process_cancels(std::vector<Done>& done) {
  for (uint64_t id : cancels) {
    auto w = std::find_if(waiting.begin(), waiting.end(), [&](auto& r) { return r->id == id; });
    if (w != waiting.end()) {
      std::unique_ptr<Request> r = std::move(*w);
      waiting.erase(w);
      ++count.cancelled;
      done.push_back({r->sink, Finish::Cancelled, r->st, {}});
      continue;
    }
    auto a = std::find_if(active.begin(), active.end(), [&](auto& r) { return r->id == id; });
    if (a != active.end()) finish(**a, Finish::Cancelled, {}, done);
  }
  cancels.clear();
}

void Scheduler::Impl::cancel_all(std::vector<Done>& done) {
  while (!active.empty()) finish(*active.back(), Finish::Cancelled, {}, done);
  for (auto& r : waiting) {
    ++count.cancelled;
    done.push_back({r->sink, Finish::Cancelled, r->st, {}});
  }
  waiting.clear();
}

void Scheduler::Impl::admit(std::vector<Done>& done) {
  while (!waiting.empty() && int64_t(active.size()) < o.parallel) {
    Request& r = *waiting.front();
    const int64_t n = int64_t(r.tokens.size());
    if (pages_for(n) > pool->n_blocks()) {
      // Only a preempted sequence grows past the pool: it has used all it can hold.
      std::unique_ptr<Request> q = std::move(waiting.front());
      waiting.pop_front();
      ++count.finished;
      done.push_back({q->sink, Finish::Length, q->st, {}});
      continue;
    }
    // Reuse the longest cached prefix of full pages, never the whole prompt: the last
    // token runs to give the logits.
    std::vector<int32_t> hit;
    if (o.prefix_cache) hit = prefix->match(r.tokens, (n - 1) / page);
    int64_t hit_evictable = 0;
    for (int32_t b : hit) hit_evictable += pool->refcount(b) == 1 ? 1 : 0;
    // Pages still to be taken: this prompt's and the rest of every admitted prompt's.
    int64_t need = pages_for(n) - int64_t(hit.size());
    for (const auto& a : active) need += pages_for(int64_t(a->tokens.size())) - pages_for(a->computed);
    const int64_t avail = pool->free_blocks() + prefix->evictable() - hit_evictable;
    if (need > avail) break;
    r.cache.emplace(pool, o.ctx_size, hit);
    r.computed = int64_t(hit.size()) * page;
    if (!hit.empty()) prefix->touch(r.tokens, int64_t(hit.size()));
    if (!r.admitted_once) {
      r.admitted_once = true;
      r.st.queued_s = seconds_since(r.submitted);
      r.st.cached_tokens = r.computed;
      count.prompt_tokens += n;
      count.cached_prompt_tokens += r.computed;
      count.prefix_hits += hit.empty() ? 0 : 1;
    }
    r.order = next_order++;
    r.logits.resize(size_t(vocab));
    active.push_back(std::move(waiting.front()));
    waiting.pop_front();
  }
}

void Scheduler::Impl::publish() {
  SchedulerStats st = count;
  st.active = int64_t(active.size());
  st.kv_pages_total = pool->n_blocks();
  st.kv_pages_used = pool->n_blocks() - pool->free_blocks();
  st.kv_pages_cached = prefix->evictable();
  snap = st;
}

void Scheduler::Impl::deliver(std::vector<Done>& done) {
  for (Done& d : done) {
    if (!d.sink) continue;
    try {
      d.sink->on_finish(d.why, d.st, d.error);
    } catch (...) {
      // A sink's failure is its own; the scheduler goes on.
    }
  }
  done.clear();
}

}  // namespace tandem::serve
