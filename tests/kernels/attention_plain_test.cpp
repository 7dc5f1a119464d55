// The materialized-score (non-flash) attention against the scalar reference: every
// instruction set, odd query/key counts and panel tails, GQA shapes, head dims with and
// without a vector tail, causal or not, keys out of position order, queries that see
// no key, lse; 1 and 3 threads (3 threads also split a head's query rows).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attention_problem.hpp"
#include "tandem/kernels/attention_plain.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem::kernels {
namespace {

using test::check_attention;
using test::kLseTol;
using test::kNegInf;
using test::kOutTol;
using test::make_problem;
using test::Problem;

void check(const Problem& p, ThreadPool& pool, const std::string& what) {
  check_attention(p, attention_materialized, pool, what);
}

std::string describe(const std::string& isa, const Problem& p, ThreadPool& pool) {
  return isa + " H" + std::to_string(p.H) + " G" + std::to_string(p.G) + " d" +
         std::to_string(p.d) + " nq" + std::to_string(p.n_q) + " nkv" + std::to_string(p.n_kv) +
         (p.causal ? " causal" : "") + " threads " + std::to_string(pool.size());
}

TEST(AttentionMaterialized, MatchesReference) {
  ThreadPool p1(1), p3(3);
  const std::vector<std::pair<int, int>> heads{{4, 4}, {8, 2}, {6, 3}};
  struct Len {
    int64_t n_q, n_kv;
  };
  // odd counts, partial row tiles (score rows 8/4, PV rows 4) and partial key panels
  const std::vector<Len> lens{{1, 1}, {1, 300}, {5, 5}, {37, 37}, {3, 100}, {70, 70}, {9, 33}};
  test::for_each_isa([&](const std::string& isa) {
    std::mt19937 rng(17);
    int k = 0;
    for (auto [H, G] : heads)
      for (int d : {16, 17, 48, 64, 128})
        for (const Len& len : lens)
          for (bool causal : {true, false}) {
            ThreadPool& pool = (k++ % 2) ? p3 : p1;
            const int64_t pad = k % 3 == 0 ? 0 : 5;
            const int32_t first = k % 2 ? 0 : 1000;
            const Problem p = make_problem(rng, H, G, d, len.n_q, len.n_kv, causal, pad, first);
            check(p, pool, describe(isa, p, pool));
            if (HasFatalFailure()) return;
          }
  });
}

// Keys out of position order and with gaps between positions: the mask is decided per
// key from kv_pos, not from the index; also several key blocks of the score loop.
TEST(AttentionMaterialized, KeysOutOfOrderAndWithGaps) {
  ThreadPool p1(1), p3(3);
  test::for_each_isa([&](const std::string& isa) {
    std::mt19937 rng(29);
    int k = 0;
    struct Case {
      int H, G, d;
      int64_t n_q, n_kv;
      int32_t shift, step;
    };
    for (const Case& c : std::vector<Case>{{2, 1, 17, 33, 33, 0, 3},
                                           {6, 3, 48, 130, 130, 0, 1},
                                           {4, 4, 64, 40, 1100, 2, 2},
                                           {8, 2, 64, 257, 257, 0, 5},
                                           {6, 3, 128, 21, 600, -7, 2}}) {
      for (bool shuffled : {false, true}) {
        ThreadPool& pool = (k++ % 2) ? p3 : p1;
        const Problem p =
            make_problem(rng, c.H, c.G, c.d, c.n_q, c.n_kv, true, 3, 7, c.shift, c.step, shuffled);
        check(p, pool, describe(isa, p, pool) + (shuffled ? " shuffled" : ""));
        if (HasFatalFailure()) return;
      }
    }
  });
}

TEST(AttentionMaterialized, QueriesWithNoVisibleKeys) {
  ThreadPool p1(1), p3(3);
  test::for_each_isa([&](const std::string& isa) {
    for (ThreadPool* pool : {&p1, &p3}) {
      std::mt19937 rng(5);
      // queries 20 positions before the keys: the first ones see nothing at all
      const Problem p = make_problem(rng, 8, 2, 48, 30, 40, true, 2, 100, -20);
      check(p, *pool, describe(isa, p, *pool) + " masked");
      std::vector<float> out(size_t(p.n_q * p.H * p.d), 99.0f), lse(size_t(p.n_q * p.H));
      attention_materialized(p.args(out.data(), lse.data()), *pool);
      for (int h = 0; h < p.H; ++h) {  // query 0 is at position 100 + 10 - 20 = 90 < 100
        EXPECT_EQ(lse[size_t(h)], kNegInf);
        for (int c = 0; c < p.d; ++c) EXPECT_EQ(out[size_t(h * p.d + c)], 0.0f);
      }
      EXPECT_TRUE(std::isfinite(lse.back()));
      // every query before every key
      const Problem none = make_problem(rng, 6, 3, 16, 7, 50, true, 0, 100, -60);
      check(none, *pool, describe(isa, none, *pool) + " all masked");
    }
  });
}

TEST(AttentionMaterialized, NoKeys) {
  ThreadPool pool(2);
  std::mt19937 rng(1);
  for (bool causal : {false, true}) {
    const Problem p = make_problem(rng, 4, 2, 16, 3, 0, causal, 0, 0);
    check(p, pool, causal ? "no keys causal" : "no keys");
  }
}

// Agrees with the flash kernel on a prefill shape larger than the unit tests above
// (several key blocks, both kernels' default paths).
TEST(AttentionMaterialized, MatchesFlashKernel) {
  ThreadPool pool(3);
  std::mt19937 rng(11);
  const Problem p = make_problem(rng, 6, 6, 48, 700, 700, true, 0, 0);
  const size_t n_out = size_t(p.n_q * p.H * p.d), n_lse = size_t(p.n_q * p.H);
  std::vector<float> o1(n_out), l1(n_lse), o2(n_out), l2(n_lse);
  attention_materialized(p.args(o1.data(), l1.data()), pool);
  attention(p.args(o2.data(), l2.data()), pool);
  for (size_t i = 0; i < n_out; ++i) ASSERT_NEAR(o1[i], o2[i], kOutTol) << i;
  for (size_t i = 0; i < n_lse; ++i)
    ASSERT_NEAR(l1[i], l2[i], kLseTol * std::max(1.0f, std::fabs(l2[i]))) << i;
}

}  // namespace
}  // namespace tandem::kernels
