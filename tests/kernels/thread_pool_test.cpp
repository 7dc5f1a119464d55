#include "tandem/kernels/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace tandem::kernels {
namespace {

TEST(ThreadPool, EveryThreadRunsOncePerRun) {
  for (int n : {1, 2, 3, 4, 7}) {
    ThreadPool pool(n);
    ASSERT_EQ(pool.size(), n);
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    const int runs = 3000;
    for (int run = 0; run < runs; ++run) {
      for (auto& h : hits) h.store(0);
      std::atomic<int> bad_nth{0};
      pool.run([&](int tid, int nth) {
        if (nth != n) bad_nth.fetch_add(1);
        hits[static_cast<size_t>(tid)].fetch_add(1);
      });
      ASSERT_EQ(bad_nth.load(), 0);
      for (int t = 0; t < n; ++t)
        ASSERT_EQ(hits[static_cast<size_t>(t)].load(), 1) << "run " << run << " tid " << t;
    }
  }
}

TEST(ThreadPool, RunWaitsForAllThreadsAndPublishesWrites) {
  ThreadPool pool(4);
  std::vector<int64_t> out(4);
  for (int run = 0; run < 2000; ++run) {
    pool.run([&](int tid, int) {
      int64_t s = 0;
      for (int i = 0; i <= 1000 * (tid + 1); ++i) s += i;  // uneven work
      out[static_cast<size_t>(tid)] = s + run;
    });
    for (int t = 0; t < 4; ++t) {
      const int64_t k = 1000 * (t + 1);
      ASSERT_EQ(out[static_cast<size_t>(t)], k * (k + 1) / 2 + run);
    }
  }
}

TEST(ThreadPool, CallerIsThreadZero) {
  ThreadPool pool(3);
  const auto caller = std::this_thread::get_id();
  std::thread::id seen;
  pool.run([&](int tid, int) {
    if (tid == 0) seen = std::this_thread::get_id();
  });
  EXPECT_EQ(seen, caller);
}

TEST(ThreadPool, ExceptionFromWorkerIsRethrown) {
  ThreadPool pool(4);
  for (int thrower : {0, 1, 3}) {
    std::atomic<int> ran{0};
    EXPECT_THROW(pool.run([&](int tid, int) {
                   ran.fetch_add(1);
                   if (tid == thrower) throw std::runtime_error("boom");
                 }),
                 std::runtime_error);
    EXPECT_EQ(ran.load(), 4);  // the others still ran to completion
    // the pool stays usable
    std::atomic<int> after{0};
    pool.run([&](int, int) { after.fetch_add(1); });
    EXPECT_EQ(after.load(), 4);
  }
}

TEST(ThreadPool, ExceptionMessageOfTheThrowerSurvives) {
  ThreadPool pool(3);
  try {
    pool.run([](int tid, int) {
      if (tid == 2) throw std::invalid_argument("from two");
    });
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "from two");
  }
}

TEST(ThreadPool, PoolOfOneRunsOnCaller) {
  ThreadPool pool(1);
  int calls = 0;
  pool.run([&](int tid, int nth) {
    EXPECT_EQ(tid, 0);
    EXPECT_EQ(nth, 1);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
  EXPECT_THROW(pool.run([](int, int) { throw std::runtime_error("x"); }), std::runtime_error);
}

TEST(ThreadPool, IdleWorkersWakeUpAfterBlocking) {
  ThreadPool pool(3);
  std::atomic<int> n{0};
  pool.run([&](int, int) { n.fetch_add(1); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // workers go to sleep
  pool.run([&](int, int) { n.fetch_add(1); });
  EXPECT_EQ(n.load(), 6);
}

TEST(ThreadPool, ManyPoolsCreatedAndDestroyed) {
  for (int i = 0; i < 50; ++i) {
    ThreadPool pool(1 + i % 4);
    std::atomic<int> n{0};
    if (i % 2) pool.run([&](int, int) { n.fetch_add(1); });
    EXPECT_EQ(n.load(), i % 2 ? 1 + i % 4 : 0);
  }
}

TEST(SplitRange, CoversEverythingOnceAndNearEqual) {
  for (int64_t n : {0, 1, 2, 5, 16, 17, 1000}) {
    for (int nth = 1; nth <= 9; ++nth) {
      int64_t expect_begin = 0;
      for (int t = 0; t < nth; ++t) {
        const auto [b, e] = split_range(n, t, nth);
        EXPECT_EQ(b, expect_begin);
        EXPECT_GE(e, b);
        EXPECT_LE(e - b, n / nth + 1);
        EXPECT_GE(e - b, n / nth);
        expect_begin = e;
      }
      EXPECT_EQ(expect_begin, n);
    }
  }
}

}  // namespace
}  // namespace tandem::kernels
