// CoreProbe: one reading per core this thread may use, of products and of attention,
// taken on that core, with the thread's CPU set as it was after.
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>

#include "tandem/analysis/calibrate.hpp"

using tandem::analysis::CoreProbe;
using tandem::analysis::CoreWork;
using Work = CoreWork;

namespace {
cpu_set_t current() {
  cpu_set_t s;
  CPU_ZERO(&s);
  EXPECT_EQ(sched_getaffinity(0, sizeof s, &s), 0);
  return s;
}
}  // namespace

TEST(CoreProbe, ReadsEveryCoreAndLeavesTheThreadWhereItWas) {
  const cpu_set_t before = current();
  const int n = CPU_COUNT(&before);
  CoreProbe p(n);
  ASSERT_TRUE(p.active());
  for (const Work w : {Work::Product, Work::Attention, Work::Stream}) {
    // Each core alone, then every core at once: one reading per core, each of one core
    // of any machine this runs on, between 0.1 and 10000 GFLOP/s.
    for (const auto& r : {p.rates(w, 2), p.together(w, 2)}) {
      ASSERT_EQ(r.size(), size_t(n));
      for (double x : r) {
        EXPECT_GT(x, 1e8);
        EXPECT_LT(x, 1e13);
      }
    }
    EXPECT_EQ(p.together(w, 1, 1).size(), 1u);  // the first core alone where asked for one
    const cpu_set_t after = current();
    EXPECT_TRUE(CPU_EQUAL(&before, &after));
    // The pace of n threads is a reading of the slowest core; the uncontended rate is
    // among the readings, within 15% of the fastest.
    EXPECT_GT(p.pace(w, n), 1e8);
    EXPECT_GT(p.uncontended(w), 1e8);
  }
  // Three different kinds of work: different rates (a one-token product streams its
  // weights: far below the 256-token one).
  EXPECT_NE(p.uncontended(Work::Product), p.uncontended(Work::Attention));
  EXPECT_LT(p.uncontended(Work::Stream), 0.8 * p.uncontended(Work::Product));
}

TEST(CoreProbe, MoreCoresThanTheThreadMayUseIsNoProbe) {
  const cpu_set_t all = current();
  CoreProbe none(CPU_COUNT(&all) + 1);
  EXPECT_FALSE(none.active());
  EXPECT_TRUE(none.rates(Work::Product).empty());
  EXPECT_TRUE(none.together(Work::Product).empty());
  EXPECT_EQ(none.pace(Work::Product, 1), 1.0);
  EXPECT_EQ(none.uncontended(Work::Attention), 1.0);
  // Held to one CPU, the thread has one core to probe.
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(CoreProbe(1).rates(Work::Attention).size(), 1u);
  EXPECT_FALSE(CoreProbe(2).active());
  ASSERT_EQ(sched_setaffinity(0, sizeof all, &all), 0);
}
