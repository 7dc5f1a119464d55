// Sliding-window masks and score soft-capping in every attention kernel (flash tiles,
// per-query units, key splits, materialized scores; every instruction set) against the
// scalar reference, and the reference against the definitions written out here.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "attention_problem.hpp"
#include "tandem/kernels/attention_plain.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem::kernels {
namespace {

using test::make_problem;
using test::Problem;

// The definitions, in double: a query at p sees keys at (p - window, p] (window 0: all
// keys up to p); scores scale * q.k, then cap * tanh(s / cap) when cap > 0.
std::vector<double> plain_attention(const Problem& p) {
  std::vector<double> out(size_t(p.n_q * p.H * p.d), 0.0);
  const double scale = 1.0 / std::sqrt(double(p.d));
  for (int64_t i = 0; i < p.n_q; ++i)
    for (int h = 0; h < p.H; ++h) {
      const int g = h / (p.H / p.G);
      std::vector<double> w(size_t(p.n_kv), 0.0);
      double mx = -1e300, sum = 0;
      std::vector<bool> seen(size_t(p.n_kv), false);
      for (int64_t j = 0; j < p.n_kv; ++j) {
        const int64_t behind = int64_t(p.q_pos[size_t(i)]) - p.kv_pos[size_t(j)];
        if (behind < 0 || (p.window > 0 && behind >= p.window)) continue;
        double s = 0;
        for (int c = 0; c < p.d; ++c)
          s += double(p.q[size_t((i * p.H + h) * p.d + c)]) *
               p.k[size_t(j * p.kv_stride + g * p.d + c)];
        s *= scale;
        if (p.softcap > 0) s = p.softcap * std::tanh(s / p.softcap);
        w[size_t(j)] = s;
        seen[size_t(j)] = true;
        mx = std::max(mx, s);
      }
      for (int64_t j = 0; j < p.n_kv; ++j)
        if (seen[size_t(j)]) sum += (w[size_t(j)] = std::exp(w[size_t(j)] - mx));
      for (int64_t j = 0; j < p.n_kv; ++j)
        if (seen[size_t(j)])
          for (int c = 0; c < p.d; ++c)
            out[size_t((i * p.H + h) * p.d + c)] +=
                w[size_t(j)] / sum * p.v[size_t(j * p.kv_stride + g * p.d + c)];
    }
  return out;
}

TEST(AttentionWindow, ReferenceFollowsTheDefinitions) {
  std::mt19937 rng(41);
  for (int32_t window : {0, 1, 4, 9})
    for (float cap : {0.0f, 2.0f}) {
      Problem p = make_problem(rng, 4, 2, 16, 12, 12, true, 0, 3);
      p.window = window;
      p.softcap = cap;
      std::vector<float> got(size_t(p.n_q * p.H * p.d));
      ref::attention(p.args(got.data(), nullptr));
      const auto want = plain_attention(p);
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 1e-6) << "window " << window << " cap " << cap << " " << i;
    }
  // window 1: each query sees its own key only, so its output is that key's value
  Problem p = make_problem(rng, 2, 1, 8, 5, 5, true, 0, 0);
  p.window = 1;
  std::vector<float> out(size_t(5 * 2 * 8));
  ref::attention(p.args(out.data(), nullptr));
  for (int64_t i = 0; i < 5; ++i)
    for (int h = 0; h < 2; ++h)
      for (int c = 0; c < 8; ++c)
        EXPECT_FLOAT_EQ(out[size_t((i * 2 + h) * 8 + c)], p.v[size_t(i * p.kv_stride + c)]);
}

void check_all_kernels(const Problem& p, ThreadPool& pool, const std::string& what) {
  const bool saved = detail::flash_attention();
  for (bool tiles : {true, false}) {
    detail::set_flash_attention(tiles);
    test::check_attention(p, attention, pool, what + (tiles ? " flash tiles" : " units"));
    if (::testing::Test::HasFatalFailure()) break;
  }
  detail::set_flash_attention(saved);
  test::check_attention(p, attention_materialized, pool, what + " materialized");
}

// Windows smaller than, across and larger than a key block (64 keys), keys in order
// and shuffled (blocks skipped or masked by positions, not by index), with and without
// capping; prefill (tiles), a later chunk, and decode against a long cache (key splits).
TEST(AttentionWindow, EveryKernelMatchesReference) {
  ThreadPool p1(1), p4(4);
  test::for_each_isa([&](const std::string& isa) {
    std::mt19937 rng(43);
    struct Case {
      int H, G, d;
      int64_t n_q, n_kv;
    };
    int k = 0;
    for (const Case& c : {Case{4, 2, 32, 150, 150}, Case{8, 2, 64, 40, 300},
                          Case{6, 3, 48, 1, 3000}, Case{4, 4, 17, 3, 700}})
      for (int32_t window : {1, 5, 64, 100, 5000})
        for (float cap : {0.0f, 3.0f})
          for (bool shuffled : {false, true}) {
            Problem p = make_problem(rng, c.H, c.G, c.d, c.n_q, c.n_kv, true, 3, 11, 0, 1, shuffled);
            p.window = window;
            p.softcap = cap;
            ThreadPool& pool = (k++ % 2) ? p4 : p1;
            check_all_kernels(p, pool,
                              isa + " nq" + std::to_string(c.n_q) + " nkv" +
                                  std::to_string(c.n_kv) + " window " + std::to_string(window) +
                                  " cap " + std::to_string(cap) + (shuffled ? " shuffled" : ""));
            if (HasFatalFailure()) return;
          }
  });
}

}  // namespace
}  // namespace tandem::kernels
