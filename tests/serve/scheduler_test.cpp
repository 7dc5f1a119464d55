// The continuous-batching scheduler: greedy results independent of batching (every
// request equals its prompt run alone through generate()), chunked prefill, sampling with
// a seed, logprobs, the end-of-sequence token, sinks that stop, ctx_size, requests that
// can never fit, the queue limit, cancel, shutdown, and clients on many threads.
//
// Exactness: a batched step runs each matmul over all its rows, so its F32 logits differ
// from a one-sequence decode by float rounding (about 1e-7, tests/runtime/
// batch_forward_test.cpp); the greedy tokens of these models and prompts are the same
// (no near-tie flips), so tokens are compared exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include "scheduler_support.hpp"

using namespace tandem;
using namespace tandem::serve;
using test::RecordingSink;

namespace {

serve::SchedulerOptions small_options() {
  SchedulerOptions o;
  o.parallel = 4;
  o.ctx_size = 256;
  o.page_tokens = 16;
  o.step_tokens = 40;  // prompts longer than what is left after the decoders are chunked
  return o;
}

TEST(Scheduler, GreedyBatchedEqualsEachPromptAlone) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(1);
  const int kN = 8, kMax = 12;
  std::vector<std::vector<int32_t>> prompts, want;
  std::vector<test::Alone> want_lp;
  for (int i = 0; i < kN; ++i) {
    prompts.push_back(test::random_prompt(rng, size_t(3 + 11 * i)));  // 3 .. 80 tokens
    want.push_back(test::alone(e, prompts.back(), kMax));
    want_lp.push_back(test::alone_logprobs(e, prompts.back(), kMax));
    ASSERT_EQ(want_lp.back().tokens, want.back());
  }
  Scheduler s(e, small_options(), {});
  // What the engine thread sees at each token: sequences per step, active, queued.
  std::atomic<int64_t> widest{0}, most_active{0}, most_queued{0};
  auto watch = [&](int) {
    const SchedulerStats st = s.stats();
    widest = std::max<int64_t>(widest, st.last_batch_sequences);
    most_active = std::max<int64_t>(most_active, st.active);
    most_queued = std::max<int64_t>(most_queued, st.queued);
  };
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < kN; ++i) {
    sinks.push_back(std::make_shared<RecordingSink>());
    sinks.back()->hook = watch;
    ASSERT_TRUE(s.submit(prompts[size_t(i)], test::greedy(kMax), sinks.back()).has_value());
  }
  s.start();  // all 8 queued first: 4 run at once, 4 wait
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(sinks[size_t(i)]->wait()) << "request " << i;
    EXPECT_EQ(sinks[size_t(i)]->why(), Finish::Length);
    EXPECT_EQ(sinks[size_t(i)]->tokens(), want[size_t(i)]) << "request " << i;
    test::expect_as_alone(*sinks[size_t(i)], want_lp[size_t(i)], "request " + std::to_string(i));
    const SequenceStats st = sinks[size_t(i)]->stats();
    EXPECT_EQ(st.prompt_tokens, int64_t(prompts[size_t(i)].size()));
    EXPECT_EQ(st.output_tokens, kMax);
    EXPECT_GT(st.first_token_s, 0);
  }
  s.shutdown(10);
  EXPECT_EQ(most_active.load(), 4);
  EXPECT_GE(widest.load(), 3);
  EXPECT_GT(most_queued.load(), 0);
  const SchedulerStats st = s.stats();
  EXPECT_EQ(st.finished, kN);
  EXPECT_EQ(st.output_tokens, kN * kMax);
  EXPECT_EQ(st.active, 0);
  EXPECT_EQ(st.queued, 0);
  EXPECT_EQ(st.kv_pages_used, st.kv_pages_cached);
  // Fewer steps than running them one after another: decode steps were shared.
  EXPECT_LT(st.steps, kN * kMax);
  for (auto& k : sinks) EXPECT_EQ(k->finishes(), 1);
}

TEST(Scheduler, SeededSamplingEqualsGenerate) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(2);
  const SamplerParams sp{0.9f, 20, 0.95f, 77};
  const auto a = test::random_prompt(rng, 21), b = test::random_prompt(rng, 9);
  const auto want = test::alone(e, a, 16, sp);
  Scheduler s(e, small_options(), {});
  s.start();
  GenParams p = test::greedy(16);
  p.temperature = sp.temperature;
  p.top_k = sp.top_k;
  p.top_p = sp.top_p;
  p.seed = sp.seed;
  auto ka = std::make_shared<RecordingSink>(), kb = std::make_shared<RecordingSink>();
  s.submit(b, p, kb);  // batched with another
  s.submit(a, p, ka);
  ASSERT_TRUE(ka->wait() && kb->wait());
  EXPECT_EQ(ka->tokens(), want);
}

TEST(Scheduler, LogprobsAreTheLogSoftmax) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(3);
  const auto prompt = test::random_prompt(rng, 12);
  Scheduler s(e, small_options(), {});
  s.start();
  GenParams p = test::greedy(5);
  p.top_logprobs = 4;
  auto k = std::make_shared<RecordingSink>();
  s.submit(prompt, p, k);
  ASSERT_TRUE(k->wait());
  const auto ev = k->events();
  ASSERT_EQ(ev.size(), 5u);
  for (const TokenEvent& t : ev) {
    ASSERT_EQ(t.top.size(), 4u);
    EXPECT_EQ(t.top[0].first, t.token);  // greedy: the most likely
    EXPECT_FLOAT_EQ(t.top[0].second, t.logprob);
    EXPECT_LT(t.logprob, 0.0f);
    double mass = 0;
    for (size_t i = 0; i < t.top.size(); ++i) {
      if (i > 0) {
        EXPECT_GE(t.top[i - 1].second, t.top[i].second);
      }
      mass += std::exp(double(t.top[i].second));
    }
    EXPECT_LE(mass, 1.0 + 1e-6);
  }
  // Without top_logprobs: no alternatives.
  auto plain = std::make_shared<RecordingSink>();
  GenParams none = test::greedy(2);
  none.top_logprobs = -1;
  s.submit(prompt, none, plain);
  ASSERT_TRUE(plain->wait());
  EXPECT_TRUE(plain->events()[0].top.empty());
  EXPECT_EQ(plain->events()[0].logprob, 0.0f);
}

TEST(Scheduler, EndOfSequenceStopsUnlessIgnored) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(4);
  const auto prompt = test::random_prompt(rng, 10);
  const auto want = test::alone(e, prompt, 12);
  size_t k = 1;  // the first token not seen before it: the EOS of this test
  while (k < want.size() && std::find(want.begin(), want.begin() + ptrdiff_t(k), want[k]) !=
                                want.begin() + ptrdiff_t(k))
    ++k;
  ASSERT_LT(k, want.size());
  Scheduler s(e, small_options(), {want[k]});
  s.start();
  GenParams p = test::greedy(12);
  p.ignore_eos = false;
  auto stop = std::make_shared<RecordingSink>(), full = std::make_shared<RecordingSink>();
  s.submit(prompt, p, stop);
  s.submit(prompt, test::greedy(12), full);
  ASSERT_TRUE(stop->wait() && full->wait());
  EXPECT_EQ(stop->why(), Finish::Stop);
  EXPECT_EQ(stop->tokens(), std::vector<int32_t>(want.begin(), want.begin() + ptrdiff_t(k)));
  EXPECT_EQ(full->why(), Finish::Length);
  EXPECT_EQ(full->tokens(), want);
}

TEST(Scheduler, SinkStopsAndContextLimit) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(5);
  SchedulerOptions o = small_options();
  o.ctx_size = 40;
  Scheduler s(e, o, {});
  s.start();
  auto text = std::make_shared<RecordingSink>(), left = std::make_shared<RecordingSink>(),
       ctx = std::make_shared<RecordingSink>();
  text->stop_after = 3;
  text->by_text = true;
  left->stop_after = 2;
  s.submit(test::random_prompt(rng, 8), test::greedy(20), text);
  s.submit(test::random_prompt(rng, 8), test::greedy(20), left);
  s.submit(test::random_prompt(rng, 30), test::greedy(100), ctx);
  ASSERT_TRUE(text->wait() && left->wait() && ctx->wait());
  EXPECT_EQ(text->why(), Finish::Stop);
  EXPECT_EQ(text->tokens().size(), 3u);
  EXPECT_EQ(left->why(), Finish::Cancelled);
  EXPECT_EQ(left->tokens().size(), 2u);
  EXPECT_EQ(ctx->why(), Finish::Length);
  EXPECT_EQ(ctx->tokens().size(), 10u);  // 30 + 10 = ctx_size
  s.shutdown(10);
  EXPECT_EQ(s.stats().cancelled, 1);
  EXPECT_EQ(s.stats().finished, 2);
}

TEST(Scheduler, RequestsThatCanNeverFitFailAtOnce) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  SchedulerOptions o = small_options();
  o.ctx_size = 64;
  o.kv_pool_tokens = 32;  // 2 pages
  Scheduler s(e, o, {});  // not started: the errors need no engine thread
  auto fail = [&](std::vector<int32_t> prompt, GenParams p, const std::string& names) {
    auto k = std::make_shared<RecordingSink>();
    EXPECT_TRUE(s.submit(std::move(prompt), p, k).has_value());
    ASSERT_EQ(k->finishes(), 1) << names;
    EXPECT_EQ(k->why(), Finish::Error);
    EXPECT_NE(k->error().find(names), std::string::npos) << k->error();
  };
  fail({}, test::greedy(4), "empty");
  fail(std::vector<int32_t>(64, 1), test::greedy(4), "ctx_size");
  fail(std::vector<int32_t>(40, 1), test::greedy(4), "KV pool");
  fail({1, 2, int32_t(test::kVocab)}, test::greedy(4), "vocabulary");
  fail({1, 2}, test::greedy(0), "max_tokens");
  GenParams lp = test::greedy(4);
  lp.top_logprobs = 21;
  fail({1, 2}, lp, "top_logprobs");
  EXPECT_EQ(s.stats().failed, 6);
  EXPECT_EQ(s.stats().queued, 0);
}

TEST(Scheduler, QueueLimitAndShutdownOfANeverStartedScheduler) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  SchedulerOptions o = small_options();
  o.queue_limit = 2;
  Scheduler s(e, o, {});
  auto a = std::make_shared<RecordingSink>(), b = std::make_shared<RecordingSink>(),
       c = std::make_shared<RecordingSink>();
  EXPECT_TRUE(s.submit({1, 2, 3}, test::greedy(4), a));
  EXPECT_TRUE(s.submit({1, 2, 3}, test::greedy(4), b));
  EXPECT_FALSE(s.submit({1, 2, 3}, test::greedy(4), c));  // full: the server's 503
  EXPECT_EQ(s.stats().queued, 2);
  s.shutdown(0);
  EXPECT_EQ(a->why(), Finish::Cancelled);
  EXPECT_EQ(b->finishes(), 1);
  EXPECT_EQ(c->finishes(), 0);  // never submitted
  EXPECT_FALSE(s.submit({1, 2, 3}, test::greedy(4), c));
  s.shutdown(0);  // idempotent
}

// A queued request and an active one, both cancelled while the active one holds its
// third token: each finishes Cancelled within a step, and their pages are freed.
TEST(Scheduler, CancelQueuedAndActive) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(6);
  SchedulerOptions o = small_options();
  o.parallel = 1;
  o.prefix_cache = false;
  Scheduler s(e, o, {});
  std::promise<void> at_three, go;
  std::shared_future<void> go_f = go.get_future().share();
  auto a = std::make_shared<RecordingSink>(), b = std::make_shared<RecordingSink>();
  a->hook = [&](int n) {
    if (n != 3) return;
    at_three.set_value();
    go_f.wait_for(std::chrono::seconds(30));
  };
  s.start();
  const auto ida = s.submit(test::random_prompt(rng, 20), test::greedy(200), a);
  const auto idb = s.submit(test::random_prompt(rng, 20), test::greedy(200), b);
  ASSERT_TRUE(ida && idb);
  ASSERT_EQ(at_three.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_EQ(s.stats().queued, 1);
  EXPECT_EQ(s.stats().active, 1);
  s.cancel(*idb);
  s.cancel(*ida);
  go.set_value();
  ASSERT_TRUE(a->wait(60) && b->wait(60));
  EXPECT_EQ(a->why(), Finish::Cancelled);
  EXPECT_EQ(a->tokens().size(), 3u);
  EXPECT_EQ(b->why(), Finish::Cancelled);
  EXPECT_TRUE(b->tokens().empty());
  const SchedulerStats st = s.stats();
  EXPECT_EQ(st.cancelled, 2);
  EXPECT_EQ(st.kv_pages_used, 0);
  s.cancel(*ida);  // already finished: nothing
  s.shutdown(10);
  EXPECT_EQ(a->finishes(), 1);
}

TEST(Scheduler, ShutdownLetsWorkFinishUntilTheDeadline) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  std::mt19937 rng(7);
  {
    Scheduler s(e, small_options(), {});
    s.start();
    std::vector<std::shared_ptr<RecordingSink>> k;
    for (int i = 0; i < 6; ++i) {
      k.push_back(std::make_shared<RecordingSink>());
      s.submit(test::random_prompt(rng, 10), test::greedy(6), k.back());
    }
    s.shutdown(120);  // ample: everything completes
    for (auto& x : k) {
      EXPECT_EQ(x->finishes(), 1);
      EXPECT_EQ(x->why(), Finish::Length);
    }
    EXPECT_FALSE(s.submit({1}, test::greedy(1), std::make_shared<RecordingSink>()));
  }
  {
    SchedulerOptions o = small_options();
    o.ctx_size = 4096;
    Scheduler s(e, o, {});
    s.start();
    std::vector<std::shared_ptr<RecordingSink>> k;
    for (int i = 0; i < 6; ++i) {
      k.push_back(std::make_shared<RecordingSink>());
      s.submit(test::random_prompt(rng, 10), test::greedy(100000), k.back());
    }
    s.shutdown(0.01);  // too short for 4086 tokens each: the rest is cancelled
    for (auto& x : k) {
      EXPECT_EQ(x->finishes(), 1);
      EXPECT_EQ(x->why(), Finish::Cancelled);
    }
    EXPECT_EQ(s.stats().cancelled, 6);
    EXPECT_EQ(s.stats().active, 0);
  }
}

// Clients on several threads submit and cancel at random: every sink finishes exactly
// once, and in the end only the prefix cache holds pages.
TEST(Scheduler, ClientsOnManyThreads) {
  kernels::ThreadPool tp(2);
  Engine e(test::sched_model(), tp);
  SchedulerOptions o = small_options();
  o.kv_pool_tokens = 320;  // 20 pages: some preemption and eviction too
  o.queue_limit = 64;
  Scheduler s(e, o, {});
  s.start();
  std::mutex mu;
  std::vector<std::shared_ptr<RecordingSink>> all;
  int refused = 0;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&, c] {
      std::mt19937 rng(100 + c);
      std::vector<int32_t> shared = test::random_prompt(rng, 40);
      for (int i = 0; i < 8; ++i) {
        auto k = std::make_shared<RecordingSink>();
        auto prompt = test::random_prompt(rng, size_t(rng() % 30 + 1));
        if (rng() % 2) prompt.insert(prompt.begin(), shared.begin(), shared.end());
        const auto id = s.submit(prompt, test::greedy(int(rng() % 10 + 1)), k);
        {
          std::lock_guard lk(mu);
          if (id) all.push_back(k); else ++refused;
        }
        if (id && rng() % 3 == 0) {
          std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
          s.cancel(*id);
        }
        (void)s.stats();
      }
    });
  for (auto& t : clients) t.join();
  for (auto& k : all) ASSERT_TRUE(k->wait(120));
  s.shutdown(30);
  for (auto& k : all) EXPECT_EQ(k->finishes(), 1);
  const SchedulerStats st = s.stats();
  EXPECT_EQ(st.finished + st.cancelled, int64_t(all.size()));
  EXPECT_EQ(st.failed, 0);
  EXPECT_EQ(st.kv_pages_used, st.kv_pages_cached);
  s.clear_prefix_cache();
  EXPECT_EQ(s.stats().kv_pages_used, 0);
  EXPECT_EQ(refused, 0);
}

}  // namespace
