// Optimized attention against the scalar reference (which materializes the scores),
// and merging of partial results over key subsets by their lse.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "attention_problem.hpp"
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
using test::random_vec;

void check(const Problem& p, ThreadPool& pool, const std::string& what) {
  check_attention(p, attention, pool, what);
}

// Runs body with the flash-attention tiles (the default) and with one unit per query.
template <typename Body>
void for_each_attention_path(Body&& body) {
  const bool saved = detail::flash_attention();
  for (bool on : {true, false}) {
    SCOPED_TRACE(on ? "flash tiles" : "per-query units");
    detail::set_flash_attention(on);
    body();
  }
  detail::set_flash_attention(saved);
}

TEST(Attention, MatchesReference) {
  ThreadPool p1(1), p2(2), p3(3), p4(4);
  const std::vector<std::pair<int, int>> heads{{4, 4}, {8, 2}, {6, 3}, {12, 4}};
  struct Len {
    int64_t n_q, n_kv;
  };
  const std::vector<Len> lens{{1, 1}, {1, 300}, {5, 5}, {37, 37}, {3, 100}, {70, 70}};
  for_each_attention_path([&] {
  test::for_each_isa([&](const std::string& isa) {
    std::mt19937 rng(17);
    int k = 0;
    for (auto [H, G] : heads)
      for (int d : {16, 48, 64})
        for (const Len& len : lens)
          for (bool causal : {true, false}) {
            ThreadPool* pool = std::vector<ThreadPool*>{&p1, &p2, &p3, &p4}[size_t(k++ % 4)];
            const int64_t pad = k % 3 == 0 ? 0 : 5;
            const int32_t first = k % 2 ? 0 : 1000;
            const Problem p = make_problem(rng, H, G, d, len.n_q, len.n_kv, causal, pad, first);
            check(p, *pool,
                  isa + " H" + std::to_string(H) + " G" + std::to_string(G) + " d" +
                      std::to_string(d) + " nq" + std::to_string(len.n_q) + " nkv" +
                      std::to_string(len.n_kv) + (causal ? " causal" : "") + " threads " +
                      std::to_string(pool->size()));
            if (HasFatalFailure()) return;
          }
  });
  });
}

// The flash tiles on what the other tests miss: head dims that are not a multiple of
// any vector width, query counts that leave partial tiles, several key blocks with the
// causal diagonal inside a block, queries of a later chunk (all earlier keys visible),
// and keys stored out of position order (masks decided per key, not by index).
TEST(Attention, FlashTilesMatchReference) {
  ThreadPool p1(1), p3(3);
  const bool saved = detail::flash_attention();
  detail::set_flash_attention(true);
  test::for_each_isa([&](const std::string& isa) {
    std::mt19937 rng(29);
    int k = 0;
    struct Case {
      int H, G, d;
      int64_t n_q, n_kv;
      int32_t shift;
    };
    for (const Case& c : std::vector<Case>{{2, 1, 17, 33, 33, 0},
                                           {6, 6, 48, 130, 130, 0},
                                           {4, 1, 80, 40, 300, 0},
                                           {12, 4, 64, 200, 260, -3},
                                           {3, 3, 33, 17, 150, -100},
                                           {8, 2, 64, 257, 257, 0}}) {
      for (bool shuffled : {false, true}) {
        ThreadPool& pool = (k++ % 2) ? p3 : p1;
        Problem p = make_problem(rng, c.H, c.G, c.d, c.n_q, c.n_kv, true, 3, 7, c.shift);
        if (shuffled) {  // permute the keys (rows of k and v with their positions)
          std::vector<int64_t> perm(size_t(p.n_kv));
          for (int64_t j = 0; j < p.n_kv; ++j) perm[size_t(j)] = j;
          std::shuffle(perm.begin(), perm.end(), rng);
          Problem q = p;
          for (int64_t j = 0; j < p.n_kv; ++j) {
            const int64_t from = perm[size_t(j)];
            q.kv_pos[size_t(j)] = p.kv_pos[size_t(from)];
            for (int64_t e = 0; e < p.kv_stride; ++e) {
              q.k[size_t(j * p.kv_stride + e)] = p.k[size_t(from * p.kv_stride + e)];
              q.v[size_t(j * p.kv_stride + e)] = p.v[size_t(from * p.kv_stride + e)];
            }
          }
          p = q;
        }
        check(p, pool,
              isa + " H" + std::to_string(c.H) + " G" + std::to_string(c.G) + " d" +
                  std::to_string(c.d) + " nq" + std::to_string(c.n_q) + " nkv" +
                  std::to_string(c.n_kv) + (shuffled ? " shuffled" : ""));
        if (HasFatalFailure()) break;
      }
      if (HasFatalFailure()) break;
    }
  });
  detail::set_flash_attention(saved);
}

TEST(Attention, DecodeWithLongCache) {
  ThreadPool pool(4);
  test::for_each_isa([&](const std::string& isa) {
    std::mt19937 rng(3);
    for (auto [H, G] : std::vector<std::pair<int, int>>{{8, 2}, {12, 4}, {32, 8}}) {
      const Problem p = make_problem(rng, H, G, 64, 1, 3000, true, 3, 500);
      check(p, pool, isa + " decode H" + std::to_string(H));
      if (HasFatalFailure()) return;
    }
    // MQA with many heads per KV head
    const Problem mqa = make_problem(rng, 20, 1, 32, 2, 1500, true, 0, 0);
    check(mqa, pool, isa + " mqa");
    // keys split over threads where the later parts are all masked, or all of them
    for (int32_t shift : {-1500, -1800, -2500}) {
      const Problem p = make_problem(rng, 8, 2, 48, 2, 2000, true, 3, 0, shift);
      check(p, pool, isa + " split masked " + std::to_string(shift));
    }
  });
}

TEST(Attention, QueriesWithNoVisibleKeys) {
  ThreadPool pool(3);
  for_each_attention_path([&] {
  test::for_each_isa([&](const std::string& isa) {
    std::mt19937 rng(5);
    // queries 20 positions before the keys: the first ones see nothing at all
    const Problem p = make_problem(rng, 8, 2, 48, 30, 40, true, 2, 100, -20);
    check(p, pool, isa + " masked");
    std::vector<float> out(size_t(p.n_q * p.H * p.d), 99.0f), lse(size_t(p.n_q * p.H));
    attention(p.args(out.data(), lse.data()), pool);
    for (int h = 0; h < p.H; ++h) {  // query 0 is at position 100 + 10 - 20 = 90 < 100
      EXPECT_EQ(lse[size_t(h)], kNegInf);
      for (int c = 0; c < p.d; ++c) EXPECT_EQ(out[size_t(h * p.d + c)], 0.0f);
    }
    EXPECT_TRUE(std::isfinite(lse.back()));
  });
  });
}

TEST(Attention, NoKeys) {
  ThreadPool pool(2);
  std::mt19937 rng(1);
  const Problem p = make_problem(rng, 4, 2, 16, 3, 0, false, 0, 0);
  check(p, pool, "no keys");
}

TEST(Attention, SingleKeyReturnsItsValue) {
  std::mt19937 rng(2);
  const Problem p = make_problem(rng, 2, 1, 16, 1, 1, true, 0, 7);
  std::vector<float> out(32), lse(2);
  ThreadPool pool(1);
  attention(p.args(out.data(), lse.data()), pool);
  for (int h = 0; h < 2; ++h) {
    double dot = 0;
    for (int c = 0; c < 16; ++c) {
      EXPECT_FLOAT_EQ(out[size_t(h * 16 + c)], p.v[size_t(c)]);
      dot += double(p.q[size_t(h * 16 + c)]) * p.k[size_t(c)];
    }
    EXPECT_NEAR(lse[size_t(h)], dot / 4.0, 1e-5);  // log(exp(s)) with scale 1/4
  }
}

// Attention over keys [0, n) equals the lse-weighted merge of attention over
// [0, s) and [s, n): how sequence parallelism combines the parts held by each rank.
TEST(Attention, PartialResultsMergeByLse) {
  ThreadPool pool(3);
  test::for_each_isa([&](const std::string& isa) {
    std::mt19937 rng(23);
    for (bool causal : {true, false}) {
      for (int64_t split : {int64_t(1), int64_t(40), int64_t(90)}) {
        const int H = 8, G = 2, d = 48;
        Problem full = make_problem(rng, H, G, d, 50, 100, causal, 4, 10);
        const size_t n_out = size_t(full.n_q * H * d), n_lse = size_t(full.n_q * H);
        std::vector<float> o_full(n_out), l_full(n_lse);
        attention(full.args(o_full.data(), l_full.data()), pool);

        std::vector<float> o1(n_out), l1(n_lse), o2(n_out), l2(n_lse);
        AttentionArgs a1 = full.args(o1.data(), l1.data());
        a1.n_kv = split;
        attention(a1, pool);
        AttentionArgs a2 = full.args(o2.data(), l2.data());
        a2.k += split * full.kv_stride;
        a2.v += split * full.kv_stride;
        a2.kv_pos += split;
        a2.n_kv = full.n_kv - split;
        attention(a2, pool);

        for (size_t qh = 0; qh < n_lse; ++qh) {
          const double m = std::max(l1[qh], l2[qh]);
          ASSERT_TRUE(std::isfinite(m));  // every query sees key 0 or its own key
          const double w1 = std::exp(l1[qh] - m), w2 = std::exp(l2[qh] - m);
          const double lse = m + std::log(w1 + w2);
          ASSERT_NEAR(lse, l_full[qh], kLseTol * std::max(1.0, std::fabs(lse)))
              << isa << " split " << split;
          for (int c = 0; c < d; ++c) {
            const size_t i = qh * size_t(d) + size_t(c);
            const double merged = (w1 * o1[i] + w2 * o2[i]) / (w1 + w2);
            ASSERT_NEAR(merged, o_full[i], kOutTol) << isa << " split " << split;
          }
        }
      }
    }
  });
}

}  // namespace
}  // namespace tandem::kernels
