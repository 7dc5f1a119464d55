// The scheduler's KV memory: the prefix cache (the full pages of a shared prefix are
// reused, not recomputed, and change no token), LRU eviction under a small pool, the pool
// back to "cached pages only" and then empty, and preemption when decode runs out of
// pages (every request still completes with its tokens alone).
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "scheduler_support.hpp"

using namespace tandem;
using namespace tandem::serve;
using test::RecordingSink;

namespace {

SchedulerOptions options(bool prefix_cache, int64_t pool_tokens = 0) {
  SchedulerOptions o;
  o.parallel = 4;
  o.ctx_size = 256;
  o.page_tokens = 16;
  o.step_tokens = 64;
  o.kv_pool_tokens = pool_tokens;
  o.prefix_cache = prefix_cache;
  return o;
}

// Runs requests one at a time (each after the previous finished); returns the sinks.
std::vector<std::shared_ptr<RecordingSink>> one_by_one(Scheduler& s,
                                                       const std::vector<std::vector<int32_t>>& p,
                                                       int max_tokens) {
  std::vector<std::shared_ptr<RecordingSink>> out;
  for (const auto& prompt : p) {
    out.push_back(std::make_shared<RecordingSink>());
    EXPECT_TRUE(s.submit(prompt, test::greedy(max_tokens), out.back()).has_value());
    EXPECT_TRUE(out.back()->wait());
  }
  return out;
}

TEST(SchedulerPrefixCache, SecondRequestReusesTheSharedFullPages) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(11);
  const auto prefix = test::random_prompt(rng, 70);  // 4 full pages + 6 tokens
  auto a = prefix, b = prefix;
  const auto ta = test::random_prompt(rng, 5), tb = test::random_prompt(rng, 9);
  a.insert(a.end(), ta.begin(), ta.end());
  b.insert(b.end(), tb.begin(), tb.end());
  const std::vector<std::vector<int32_t>> prompts{a, b, a};
  std::vector<test::Alone> want;
  for (const auto& p : prompts) want.push_back(test::alone_logprobs(e, p, 10));

  std::vector<std::vector<int32_t>> got[2];
  for (bool cache : {false, true}) {
    Scheduler s(e, options(cache), {});
    s.start();
    const auto k = one_by_one(s, prompts, 10);
    for (size_t i = 0; i < k.size(); ++i) {
      got[cache].push_back(k[i]->tokens());
      test::expect_as_alone(*k[i], want[i], "request " + std::to_string(i) + (cache ? " cached" : ""));
    }
    const SchedulerStats st = s.stats();
    if (!cache) {
      for (auto& x : k) EXPECT_EQ(x->stats().cached_tokens, 0);
      EXPECT_EQ(st.prefix_hits, 0);
      EXPECT_EQ(st.kv_pages_used, 0);
      EXPECT_EQ(st.kv_pages_cached, 0);
      continue;
    }
    EXPECT_EQ(k[0]->stats().cached_tokens, 0);
    EXPECT_EQ(k[1]->stats().cached_tokens, 64);  // the full pages of the shared 70 tokens
    // a again: all of its 75 prompt tokens' full pages (4), its last token recomputed.
    EXPECT_EQ(k[2]->stats().cached_tokens, 64);
    EXPECT_EQ(st.prefix_hits, 2);
    EXPECT_EQ(st.cached_prompt_tokens, 128);
    EXPECT_EQ(st.prompt_tokens, int64_t(a.size() * 2 + b.size()));
    // Pages kept: a's 5 full pages (75 + 9 fed tokens = 84: 5 pages), b's 1 of its own
    // beyond the 4 shared (79 + 9 = 88: 5 pages).
    EXPECT_EQ(st.kv_pages_cached, 6);
    EXPECT_EQ(st.kv_pages_used, st.kv_pages_cached);
    s.clear_prefix_cache();
    EXPECT_EQ(s.stats().kv_pages_used, 0);
    EXPECT_EQ(s.stats().kv_pages_cached, 0);
    // Nothing cached any more: a third run of b recomputes everything, same tokens.
    const auto again = one_by_one(s, {b}, 10);
    EXPECT_EQ(again[0]->stats().cached_tokens, 0);
    test::expect_as_alone(*again[0], want[1], "b again");
  }
  EXPECT_EQ(got[0], got[1]);
}

// A request that arrives while the first with the same prefix still decodes reuses the
// pages that first one has filled, before it finishes.
TEST(SchedulerPrefixCache, RequestWhileTheFirstStillRunsReusesItsPages) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(12);
  const auto system = test::random_prompt(rng, 100);  // 6 full pages + 4 tokens
  auto a = system, b = system;
  const auto ta = test::random_prompt(rng, 3), tb = test::random_prompt(rng, 7);
  a.insert(a.end(), ta.begin(), ta.end());
  b.insert(b.end(), tb.begin(), tb.end());
  const test::Alone want_b = test::alone_logprobs(e, b, 6);
  Scheduler s(e, options(true), {});
  s.start();
  auto ka = std::make_shared<RecordingSink>(), kb = std::make_shared<RecordingSink>();
  std::promise<void> first;
  std::atomic<bool> b_done{false}, a_running{false};
  kb->hook = [&](int n) {
    if (n == 6) {
      a_running = ka->finishes() == 0;
      b_done = true;
    }
  };
  ka->hook = [&](int n) {  // a decodes slowly until b has its tokens
    if (n == 1) first.set_value();
    if (!b_done) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  };
  ASSERT_TRUE(s.submit(a, test::greedy(120), ka));
  first.get_future().wait();  // a is prefilled and decoding
  ASSERT_TRUE(s.submit(b, test::greedy(6), kb));
  ASSERT_TRUE(kb->wait());
  EXPECT_TRUE(a_running) << "a finished first: the test shows nothing";
  EXPECT_EQ(kb->stats().cached_tokens, 96);
  test::expect_as_alone(*kb, want_b, "b beside a");
  ASSERT_TRUE(ka->wait());
  EXPECT_EQ(s.stats().prefix_hits, 1);
}

// A prompt that is exactly whole pages: the last page cannot be reused (its last token
// must run for the logits), the others are.
TEST(SchedulerPrefixCache, NeverTheWholePrompt) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(12);
  const auto p = test::random_prompt(rng, 48);
  const auto want = test::alone_logprobs(e, p, 6);
  Scheduler s(e, options(true), {});
  s.start();
  const auto k = one_by_one(s, {p, p}, 6);
  EXPECT_EQ(k[1]->stats().cached_tokens, 32);
  test::expect_as_alone(*k[0], want, "first");
  test::expect_as_alone(*k[1], want, "second");
}

// A pool of 10 pages and requests of 3 to 6 pages each: the cache must evict, and the
// results never change. First two at a time (cached pages, active sequences, eviction and
// preemption mixed: which pages survive then depends on timing), then one at a time,
// each base prompt twice in a row with another tail: the second always finds the base's
// 2 full pages (the most recently used), though the 8 requests leave more pages than
// the pool holds.
TEST(SchedulerPrefixCache, EvictionUnderASmallPoolKeepsResults) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(13);
  std::vector<std::vector<int32_t>> bases;
  for (int i = 0; i < 4; ++i) bases.push_back(test::random_prompt(rng, 40));
  auto with_tail = [&](int base, size_t n) {
    auto p = bases[size_t(base)];
    const auto tail = test::random_prompt(rng, n);
    p.insert(p.end(), tail.begin(), tail.end());
    return p;
  };
  std::vector<std::vector<int32_t>> pairs, serial;
  for (int round = 0; round < 3; ++round)
    for (int i = 0; i < 4; ++i) pairs.push_back(with_tail(i, size_t(3 + round * 10 + i)));
  for (int i = 0; i < 4; ++i)
    for (int r = 0; r < 2; ++r) serial.push_back(with_tail(i, size_t(5 + 7 * r + i)));
  std::vector<test::Alone> want_pairs, want_serial;
  for (const auto& p : pairs) want_pairs.push_back(test::alone_logprobs(e, p, 8));
  for (const auto& p : serial) want_serial.push_back(test::alone_logprobs(e, p, 8));
  SchedulerOptions o = options(true, 160);
  o.parallel = 2;
  Scheduler s(e, o, {});
  s.start();
  std::vector<std::shared_ptr<RecordingSink>> k;
  for (size_t i = 0; i < pairs.size(); i += 2) {
    for (size_t j = i; j < i + 2; ++j) {
      k.push_back(std::make_shared<RecordingSink>());
      s.submit(pairs[j], test::greedy(8), k.back());
    }
    ASSERT_TRUE(k[i]->wait() && k[i + 1]->wait());
  }
  int64_t cached = 0;
  for (size_t i = 0; i < k.size(); ++i) {
    test::expect_as_alone(*k[i], want_pairs[i], "pair request " + std::to_string(i));
    cached += k[i]->stats().cached_tokens;
  }
  const auto ks = one_by_one(s, serial, 8);
  int64_t inserted_pages = 0;
  for (size_t i = 0; i < ks.size(); ++i) {
    test::expect_as_alone(*ks[i], want_serial[i], "serial request " + std::to_string(i));
    if (i % 2 == 1) EXPECT_EQ(ks[i]->stats().cached_tokens, 32) << "serial request " << i;
    cached += ks[i]->stats().cached_tokens;
    inserted_pages += int64_t(serial[i].size() + 7) / 16;  // full pages it leaves
  }
  EXPECT_GT(inserted_pages, 10);  // so the cache had to evict
  const SchedulerStats st = s.stats();
  EXPECT_GE(st.prefix_hits, 4);
  EXPECT_EQ(st.cached_prompt_tokens, cached);
  EXPECT_LE(st.kv_pages_cached, st.kv_pages_total);
  EXPECT_EQ(st.kv_pages_used, st.kv_pages_cached);
  EXPECT_EQ(st.failed, 0);
  s.clear_prefix_cache();
  EXPECT_EQ(s.stats().kv_pages_used, 0);
}

// 4 sequences of 20 + 44 tokens (4 pages each at the end) in a pool of 8 pages: decode
// runs out of pages, the newest are preempted and recomputed later; every request ends
// with the tokens it makes alone.
TEST(SchedulerPreemption, PoolTooSmallForAllStillGivesEachItsTokens) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(14);
  for (bool cache : {true, false}) {
    std::vector<std::vector<int32_t>> prompts;
    std::vector<test::Alone> want;
    for (int i = 0; i < 6; ++i) {
      prompts.push_back(test::random_prompt(rng, 20));
      want.push_back(test::alone_logprobs(e, prompts.back(), 44));
    }
    Scheduler s(e, options(cache, 128), {});
    s.start();
    std::vector<std::shared_ptr<RecordingSink>> k;
    for (const auto& p : prompts) {
      k.push_back(std::make_shared<RecordingSink>());
      s.submit(p, test::greedy(44), k.back());
    }
    int preempted = 0;
    for (size_t i = 0; i < k.size(); ++i) {
      ASSERT_TRUE(k[i]->wait());
      EXPECT_EQ(k[i]->why(), Finish::Length);
      test::expect_as_alone(*k[i], want[i],
                            "request " + std::to_string(i) + (cache ? " cached" : ""));
      EXPECT_EQ(k[i]->stats().output_tokens, 44);
      preempted += k[i]->stats().preemptions;
    }
    s.shutdown(10);
    const SchedulerStats st = s.stats();
    EXPECT_GT(st.preemptions, 0);
    EXPECT_EQ(st.preemptions, preempted);
    EXPECT_EQ(st.finished, 6);
    EXPECT_EQ(st.kv_pages_used, st.kv_pages_cached);
    if (!cache) {
      EXPECT_EQ(st.kv_pages_used, 0);
    }
  }
}

}  // namespace
