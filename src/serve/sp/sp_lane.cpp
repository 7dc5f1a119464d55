#include "tandem/serve/sp_lane.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/parallel/scheme.hpp"
#include "tandem/runtime/sampler.hpp"
#include "tandem/runtime/session.hpp"

namespace tandem::serve {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kTagCommand = 27001;

enum class Kind : int64_t { Idle = 0, Run = 1, Stop = 2 };
struct Command {
  Kind kind = Kind::Idle;
  int64_t prompt = 0;     // Run: prompt tokens (broadcast next)
  int64_t decode = 0;     // Run: output tokens reserved in the KV cache
};
// Per output token: the id rank 0 sampled and whether a decode step follows.
struct Next {
  int32_t token = 0;
  int32_t go = 0;
};

// The prefill and decode steps every rank runs together; `choose` (rank 0: sample and
// report; others: nothing) is given each logits row and returns the next step's token,
// or nullopt when the sequence ends. Collective.
template <class Choose>
void run_sequence(Session& s, std::vector<int32_t>& prompt, int64_t decode, Choose choose,
                  double* prefill_s) {
  comm::Communicator& c = s.comm();
  c.broadcast(prompt.data(), prompt.size() * sizeof(int32_t), 0);
  const Stopwatch sw;
  const PrefillOutput part = s.prefill(prompt, 1, decode);
  std::vector<float> row = s.last_row(part);
  if (prefill_s) *prefill_s = sw.seconds();
  for (int32_t pos = int32_t(prompt.size());; ++pos) {
    Next next;
    if (c.rank() == 0) {
      const std::optional<int32_t> t = choose(std::span<const float>(row));
      next = {t.value_or(0), t ? 1 : 0};
    }
    c.broadcast(&next, sizeof next, 0);
    if (!next.go) return;
    s.decode_step(next.token, pos, row.data());
  }
}

// A command from rank 0, waited for with naps (an idle rank spends no core), within the
// communicator's timeout.
Command receive_command(comm::Communicator& c) {
  Command cmd;
  auto req = c.irecv(&cmd, sizeof cmd, 0, kTagCommand);
  const double deadline = now_seconds() + c.timeout();
  while (!req->test()) {
    if (now_seconds() > deadline)
      fail(ErrorKind::Comm, "{}: tandem serve: no word from rank 0 for {} s (it stopped or hangs)",
           c.who(), c.timeout());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return cmd;
}

}  // namespace

struct LaneRequest {
  uint64_t id = 0;
  std::vector<int32_t> prompt;
  GenParams p;
  std::shared_ptr<SequenceSink> sink;
  Clock::time_point submitted;
};

struct SpLane::Impl {
  Session& s;
  SpLaneOptions o;
  std::vector<int32_t> eos;
  int64_t vocab = 0;

  mutable std::mutex m;
  std::condition_variable cv;
  std::deque<std::unique_ptr<LaneRequest>> waiting;
  std::vector<uint64_t> cancels;
  uint64_t next_id = 1;
  bool running = false, stopping = false;
  Clock::time_point deadline{};
  std::string broken;  // why the ranks can no longer run anything
  SpLaneStats st;
  std::thread thread;
  std::mutex join_m;

  Impl(Session& session, const SpLaneOptions& opt, std::vector<int32_t> e)
      : s(session), o(opt), eos(std::move(e)), vocab(session.model().hparams().n_vocab) {
    if (s.comm().rank() != 0) fail(ErrorKind::Internal, "SpLane runs on rank 0 (the others: sp_follow)");
    if (o.rank_kv_tokens < 1) bad_input("tandem serve --sp: the KV tokens per rank must be >= 1");
  }

  // Output tokens a prompt of n can have (<= want), or 0 when the prompt does not fit.
  int64_t room(int64_t n, int64_t want) const {
    const int P = s.comm().size();
    auto fits = [&](int64_t d) {
      for (int r = 0; r < P; ++r)
        if (parallel::scheme_cache_capacity(s.scheme(), n, d, P, r) > o.rank_kv_tokens) return false;
      return true;
    };
    if (!fits(1)) return 0;
    int64_t lo = 1, hi = want;
    if (fits(hi)) return hi;
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      (fits(mid) ? lo : hi) = mid;
    }
    return lo;
  }

  int64_t max_prompt() const {
    int64_t lo = 0, hi = o.rank_kv_tokens * s.comm().size() + 1;
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      (room(mid, 1) > 0 ? lo : hi) = mid;
    }
    return lo;
  }

  void tell_all(Kind k, int64_t prompt = 0, int64_t decode = 0) {
    const Command cmd{k, prompt, decode};
    for (int r = 1; r < s.comm().size(); ++r) s.comm().send(&cmd, sizeof cmd, r, kTagCommand);
  }

  bool cancelled(uint64_t id) {
    std::lock_guard lk(m);
    if (stopping && Clock::now() >= deadline) return true;
    return std::find(cancels.begin(), cancels.end(), id) != cancels.end();
  }

  void end(LaneRequest& r, Finish why, const SequenceStats& sst, const std::string& error) {
    {
      std::lock_guard lk(m);
      ++st.requests;
      if (why == Finish::Cancelled) ++st.cancelled;
      else if (why == Finish::Error) ++st.failed;
      else ++st.finished;
      st.active = 0;
      std::erase(cancels, r.id);
    }
    r.sink->on_finish(why, sst, error);
  }

  void serve(LaneRequest& r) {
    SequenceStats sst;
    sst.prompt_tokens = int64_t(r.prompt.size());
    sst.queued_s = std::chrono::duration<double>(Clock::now() - r.submitted).count();
    const int64_t decode = room(int64_t(r.prompt.size()), r.p.max_tokens);
    Sampler sampler(SamplerParams{r.p.temperature, r.p.top_k, r.p.top_p, r.p.seed});
    std::optional<Finish> why;
    std::string error;
    auto choose = [&](std::span<const float> row) -> std::optional<int32_t> {
      if (cancelled(r.id)) why = Finish::Cancelled;
      if (why) return std::nullopt;
      const int32_t t = sampler.sample(row);
      const double since = std::chrono::duration<double>(Clock::now() - r.submitted).count();
      const int64_t before = sst.output_tokens;
      why = report_token(row, t, r.p, eos, *r.sink, sst, since, error);
      if (sst.output_tokens > before) {
        std::lock_guard lk(m);
        ++st.output_tokens;
      }
      // The reserved room is spent: the context is full.
      if (!why && sst.output_tokens >= decode) why = Finish::Length;
      if (why) return std::nullopt;
      return t;
    };
    double prefill_s = 0;
    try {
      tell_all(Kind::Run, int64_t(r.prompt.size()), decode);
      run_sequence(s, r.prompt, decode, choose, &prefill_s);
    } catch (const std::exception& e) {
      // The communicator is broken after a failed operation: nothing more can run.
      {
        std::lock_guard lk(m);
        broken = e.what();
      }
      end(r, Finish::Error, sst, fmt::format("the sequence-parallel ranks failed: {}", e.what()));
      return;
    }
    {
      std::lock_guard lk(m);
      st.last_prefill_s = prefill_s;
    }
    end(r, why.value_or(Finish::Length), sst, error);
  }

  void run() {
    std::unique_lock lk(m);
    for (;;) {
      const bool alive = broken.empty();
      if (!waiting.empty() && (!stopping || Clock::now() < deadline) && alive) {
        std::unique_ptr<LaneRequest> r = std::move(waiting.front());
        waiting.pop_front();
        st.queued = int64_t(waiting.size());
        if (std::find(cancels.begin(), cancels.end(), r->id) != cancels.end()) {
          lk.unlock();
          end(*r, Finish::Cancelled, SequenceStats{int64_t(r->prompt.size())}, {});
          lk.lock();
          continue;
        }
        st.active = 1;
        st.prompt_tokens += int64_t(r->prompt.size());
        lk.unlock();
        serve(*r);
        lk.lock();
        continue;
      }
      if (stopping || !alive) {
        // Past the deadline (or broken): what still waits is cancelled (or failed).
        std::deque<std::unique_ptr<LaneRequest>> rest;
        rest.swap(waiting);
        st.queued = 0;
        const std::string why = broken;
        lk.unlock();
        for (auto& r : rest)
          end(*r, why.empty() ? Finish::Cancelled : Finish::Error, SequenceStats{int64_t(r->prompt.size())},
              why.empty() ? std::string() : "the sequence-parallel ranks failed: " + why);
        if (stopping) {
          if (alive) {
            try {
              tell_all(Kind::Stop);
            } catch (const std::exception&) {
              // a rank already gone: nothing more to tell it
            }
          }
          return;
        }
        lk.lock();
        cv.wait(lk, [&] { return stopping || !waiting.empty(); });
        continue;
      }
      // Idle: a heartbeat now and then, so the other ranks know rank 0 is alive.
      if (cv.wait_for(lk, std::chrono::duration<double>(o.heartbeat_s),
                      [&] { return stopping || !waiting.empty(); }))
        continue;
      lk.unlock();
      try {
        tell_all(Kind::Idle);
      } catch (const std::exception& e) {
        lk.lock();
        broken = e.what();
        continue;
      }
      lk.lock();
    }
  }
};

SpLane::SpLane(Session& session, const SpLaneOptions& o, std::vector<int32_t> eos)
    : impl_(std::make_unique<Impl>(session, o, std::move(eos))) {}

SpLane::~SpLane() { shutdown(0); }

const SpLaneOptions& SpLane::options() const { return impl_->o; }
int SpLane::ranks() const { return impl_->s.comm().size(); }
int64_t SpLane::max_prompt_tokens() const { return impl_->max_prompt(); }

std::optional<uint64_t> SpLane::submit(std::vector<int32_t> prompt, const GenParams& p,
                                       std::shared_ptr<SequenceSink> sink) {
  Impl& s = *impl_;
  auto r = std::make_unique<LaneRequest>();
  r->prompt = std::move(prompt);
  r->p = p;
  r->sink = std::move(sink);
  r->submitted = Clock::now();
  const int64_t n = int64_t(r->prompt.size());
  std::string error = request_error(r->prompt, p, s.vocab);
  if (error.empty() && s.room(n, 1) == 0)
    error = fmt::format("the prompt has {} tokens, more than {} ranks hold together ({} tokens)", n,
                        s.s.comm().size(), s.max_prompt());
  std::unique_lock lk(s.m);
  if (s.stopping) return std::nullopt;
  if (error.empty() && !s.broken.empty())
    error = "the sequence-parallel ranks failed: " + s.broken;
  if (error.empty() && int64_t(s.waiting.size()) >= s.o.queue_limit) return std::nullopt;
  const uint64_t id = s.next_id++;
  r->id = id;
  if (!error.empty()) {
    ++s.st.failed;
    lk.unlock();
    r->sink->on_finish(Finish::Error, SequenceStats{n}, error);
    return id;
  }
  s.waiting.push_back(std::move(r));
  s.st.queued = int64_t(s.waiting.size());
  s.cv.notify_one();
  return id;
}

void SpLane::cancel(uint64_t id) {
  std::lock_guard lk(impl_->m);
  impl_->cancels.push_back(id);
  impl_->cv.notify_one();
}

void SpLane::start() {
  std::lock_guard lk(impl_->m);
  if (impl_->running || impl_->stopping) return;
  impl_->running = true;
  impl_->thread = std::thread([this] { impl_->run(); });
}

void SpLane::shutdown(double deadline_s) {
  Impl& s = *impl_;
  std::lock_guard join_lk(s.join_m);
  bool started;
  {
    std::lock_guard lk(s.m);
    if (!s.stopping) {
      s.stopping = true;
      s.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(std::max(deadline_s, 0.0)));
    }
    started = s.running;
    s.cv.notify_one();
  }
  if (started) {
    if (s.thread.joinable()) s.thread.join();
    return;
  }
  // Never started: the queue is cancelled here and the other ranks told to stop.
  std::deque<std::unique_ptr<LaneRequest>> rest;
  {
    std::lock_guard lk(s.m);
    rest.swap(s.waiting);
    s.running = true;  // once
  }
  for (auto& r : rest) s.end(*r, Finish::Cancelled, SequenceStats{int64_t(r->prompt.size())}, {});
  try {
    s.tell_all(Kind::Stop);
  } catch (const std::exception&) {
  }
}

SpLaneStats SpLane::stats() const {
  std::lock_guard lk(impl_->m);
  return impl_->st;
}

void sp_follow(Session& s) {
  comm::Communicator& c = s.comm();
  if (c.rank() == 0) fail(ErrorKind::Internal, "sp_follow runs on the ranks other than 0");
  std::vector<int32_t> prompt;
  for (;;) {
    const Command cmd = receive_command(c);
    if (cmd.kind == Kind::Stop) return;
    if (cmd.kind != Kind::Run) continue;
    if (cmd.prompt < 1 || cmd.decode < 1)
      fail(ErrorKind::Comm, "{}: tandem serve: rank 0 sent a run of {} prompt and {} output tokens",
           c.who(), cmd.prompt, cmd.decode);
    prompt.assign(size_t(cmd.prompt), 0);
    run_sequence(s, prompt, cmd.decode, [](std::span<const float>) { return std::optional<int32_t>(); },
                 nullptr);
  }
}

}  // namespace tandem::serve
