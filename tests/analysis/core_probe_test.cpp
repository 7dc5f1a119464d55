// CoreProbe: one reading per core this thread may use, taken on that core, and the
// thread's CPU set as it was after.
#include <gtest/gtest.h>
#include <sched.h>

#include <cstring>

#include "tandem/analysis/calibrate.hpp"

using tandem::analysis::CoreProbe;

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
  const auto r = p.rates(2);
  ASSERT_EQ(r.size(), size_t(n));
  for (double x : r) {
    // A 256-token f16 product on one core of any machine this runs on: between 0.1 and
    // 10000 GFLOP/s.
    EXPECT_GT(x, 1e8);
    EXPECT_LT(x, 1e13);
  }
  const cpu_set_t after = current();
  EXPECT_TRUE(CPU_EQUAL(&before, &after));
}

TEST(CoreProbe, MoreCoresThanTheThreadMayUseIsNoProbe) {
  const cpu_set_t all = current();
  EXPECT_FALSE(CoreProbe(CPU_COUNT(&all) + 1).active());
  EXPECT_TRUE(CoreProbe(CPU_COUNT(&all) + 1).rates().empty());
  // Held to one CPU, the thread has one core to probe.
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(CoreProbe(1).rates().size(), 1u);
  EXPECT_EQ(CoreProbe(2).active(), false);
  ASSERT_EQ(sched_setaffinity(0, sizeof all, &all), 0);
}
