// One step of the engine thread: the rows of every active sequence (each decoder's next
// token, then prompt chunks up to the step's token budget), pages for them (evicting
// cached pages, then preempting the newest sequences), one forward_batch, sampling.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "serve/scheduler_impl.hpp"
#include "tandem/core/error.hpp"

namespace tandem::serve {

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The log-softmax of one row: the chosen token's and the k largest, best first (higher
// logit first, then lower id), kept in a heap of k while scanning the row once.
void logprobs(std::span<const float> row, int32_t chosen, int k, TokenEvent& ev) {
  const float mx = *std::max_element(row.begin(), row.end());
  double sum = 0;
  for (float x : row) sum += std::exp(double(x) - mx);
  const double lse = double(mx) + std::log(sum);
  ev.logprob = float(double(row[size_t(chosen)]) - lse);
  const size_t n = std::min(size_t(std::max(k, 0)), row.size());
  if (n == 0) return;
  auto better = [&](int32_t a, int32_t b) {
    return row[size_t(a)] > row[size_t(b)] || (row[size_t(a)] == row[size_t(b)] && a < b);
  };
  std::vector<int32_t> top;  // a heap whose front is the worst kept
  top.reserve(n + 1);
  for (int32_t i = 0; i < int32_t(row.size()); ++i) {
    if (top.size() == n && !better(i, top.front())) continue;
    top.push_back(i);
    std::push_heap(top.begin(), top.end(), better);
    if (top.size() > n) {
      std::pop_heap(top.begin(), top.end(), better);
      top.pop_back();
    }
  }
  std::sort(top.begin(), top.end(), better);
  for (int32_t i : top) ev.top.emplace_back(i, float(double(row[size_t(i)]) - lse));
}

}  // namespace

void Scheduler::Impl::release(Request& r, bool keep_pages) {
  if (!r.cache) return;
  if (keep_pages && o.prefix_cache) {
    const int64_t full = r.computed / page;
    prefix->insert(std::span(r.tokens).first(size_t(full * page)), r.cache->blocks());
  }
  r.cache.reset();
  r.computed = 0;
  r.shared_pages = 0;
}

void Scheduler::Impl::finish(Request& r, Finish why, std::string error, std::vector<Done>& done,
                             bool keep_pages) {
  release(r, keep_pages);
  switch (why) {
    case Finish::Stop:
    case Finish::Length: ++count.finished; break;
    case Finish::Cancelled: ++count.cancelled; break;
    case Finish::Error: ++count.failed; break;
  }
  done.push_back({r.sink, why, r.st, std::move(error)});
  auto it = std::find_if(active.begin(), active.end(), [&](auto& a) { return a.get() == &r; });
  TD_CHECK(it != active.end());
  active.erase(it);
}

void Scheduler::Impl::preempt(Request& r) {
  // Its pages go (full ones into the prefix cache, where the next admission may find
  // them again); prompt + tokens so far are recomputed when it is readmitted, first.
  release(r, true);
  ++r.st.preemptions;
  ++count.preemptions;
  auto it = std::find_if(active.begin(), active.end(), [&](auto& a) { return a.get() == &r; });
  TD_CHECK(it != active.end());
  std::unique_ptr<Request> q = std::move(*it);
  active.erase(it);
  std::lock_guard lk(m);
  waiting.push_front(std::move(q));
}

void Scheduler::Impl::step(std::vector<Done>& done) {
  std::sort(active.begin(), active.end(), [](auto& a, auto& b) { return a->order < b->order; });
  // Rows per sequence: decoders first (one each), then prompt chunks in admission order.
  auto plan = [&](std::vector<std::pair<Request*, int64_t>>& rows) {
    rows.clear();
    int64_t budget = o.step_tokens;
    for (auto& a : active)
      if (int64_t(a->tokens.size()) - a->computed == 1 && budget > 0) {
        rows.emplace_back(a.get(), 1);
        --budget;
      }
    for (auto& a : active) {
      const int64_t pending = int64_t(a->tokens.size()) - a->computed;
      if (pending > 1 && budget > 0) {
        rows.emplace_back(a.get(), std::min(pending, budget));
        budget -= rows.back().second;
      }
    }
  };
  auto pages_needed = [&](const std::vector<std::pair<Request*, int64_t>>& rows) {
    int64_t need = 0;
    for (auto& [r, n] : rows) need += pages_for(r->computed + n) - pages_for(r->computed);
    return need;
  };
  std::vector<std::pair<Request*, int64_t>> rows;
  plan(rows);
  // Pages: free ones, then cached ones no sequence uses, then the newest sequences'.
  while (pages_needed(rows) > pool->free_blocks() + prefix->evictable()) {
    if (active.size() == 1) {
      // Alone and still out of pages: it holds the whole pool, its context can grow no more.
      finish(*active.front(), Finish::Length, {}, done);
      return;
    }
    preempt(*active.back());
    plan(rows);
  }
  const int64_t short_by = pages_needed(rows) - pool->free_blocks();
  if (short_by > 0) prefix->evict(short_by);
  if (rows.empty()) return;

  items.clear();
  int64_t tokens = 0;
  for (auto& [r, n] : rows) {
    r->pos.resize(size_t(n));
    std::iota(r->pos.begin(), r->pos.end(), int32_t(r->computed));
    const bool last = r->computed + n == int64_t(r->tokens.size());
    items.push_back({&*r->cache, std::span(r->tokens).subspan(size_t(r->computed), size_t(n)),
                     r->pos, last ? r->logits.data() : nullptr});
    tokens += n;
  }
  try {
    engine.forward_batch(items);
  } catch (const std::exception& e) {
    for (auto& [r, n] : rows) finish(*r, Finish::Error, e.what(), done, false);
    return;
  }
  ++count.steps;
  count.last_batch_sequences = int64_t(rows.size());
  count.last_batch_tokens = tokens;
  for (auto& [r, n] : rows) {
    r->computed += n;
    // Full pages are shared as soon as they hold their tokens: a request that arrives
    // while this one still runs (the same system prompt) reuses them.
    const int64_t full = r->computed / page;
    if (o.prefix_cache && full > r->shared_pages) {
      prefix->insert(std::span(r->tokens).first(size_t(full * page)), r->cache->blocks());
      r->shared_pages = full;
    }
    if (r->computed == int64_t(r->tokens.size())) emit(*r, done);
  }
}

void Scheduler::Impl::emit(Request& r, std::vector<Done>& done) {
  const std::span<const float> row(r.logits);
  const int32_t t = r.sampler.sample(row);
  const int64_t before = r.st.output_tokens;
  std::string error;
  std::optional<Finish> end =
      report_token(row, t, r.p, eos, *r.sink, r.st, seconds_since(r.submitted), error);
  if (r.st.output_tokens > before) {
    r.tokens.push_back(t);
    ++count.output_tokens;
    if (!end && int64_t(r.tokens.size()) >= o.ctx_size) end = Finish::Length;
  }
  if (end) finish(r, *end, std::move(error), done);
}

std::optional<Finish> report_token(std::span<const float> row, int32_t token, const GenParams& p,
                                   std::span<const int32_t> eos, SequenceSink& sink,
                                   SequenceStats& st, double elapsed_s, std::string& error) {
  if (!p.ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end())
    return Finish::Stop;  // the end-of-sequence token is not reported
  ++st.output_tokens;
  if (st.output_tokens == 1) st.first_token_s = elapsed_s;
  TokenEvent ev;
  ev.token = token;
  if (p.top_logprobs >= 0) logprobs(row, token, p.top_logprobs, ev);
  bool more = false;
  try {
    more = sink.on_token(ev);
  } catch (const std::exception& e) {
    error = std::string("the token sink failed: ") + e.what();
    return Finish::Error;
  }
  if (!more) return sink.stopped_by_text() ? Finish::Stop : Finish::Cancelled;
  if (st.output_tokens >= p.max_tokens) return Finish::Length;
  return std::nullopt;
}

}  // namespace tandem::serve
