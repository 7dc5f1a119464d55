// get_rows, rmsnorm, rope, swiglu and add against the scalar references.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernel_test_util.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem::kernels {
namespace {

using test::random_vec;

TEST(GetRows, MatchesReferenceAndDequantizedRows) {
  std::mt19937 rng(9);
  for (DType t : test::all_weight_types()) {
    const int64_t cols = test::block_cols(t, 64);
    const test::TestWeight tw = test::make_weight(rng, t, 50, cols);
    const std::vector<int32_t> ids{0, 49, 7, 7, 23};
    std::vector<float> got(ids.size() * size_t(cols)), want(ids.size() * size_t(cols));
    get_rows(tw.w, ids.data(), int64_t(ids.size()), got.data());
    ref::get_rows(tw.w, ids.data(), int64_t(ids.size()), want.data());
    EXPECT_EQ(got, want) << dtype_name(t);
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::vector<float> row = tw.row(ids[i]);
      EXPECT_TRUE(std::equal(row.begin(), row.end(), got.begin() + long(i) * cols));
    }
  }
}

TEST(RmsNorm, MatchesReference) {
  ThreadPool p1(1), p3(3), p4(4);
  std::mt19937 rng(2);
  for (ThreadPool* pool : {&p1, &p3, &p4}) {
    for (auto [m, n] : std::vector<std::pair<int64_t, int64_t>>{
             {1, 1}, {1, 7}, {3, 64}, {5, 333}, {64, 768}, {17, 4096}}) {
      const std::vector<float> x = random_vec(rng, size_t(m * n), -3.0f, 3.0f);
      const std::vector<float> w = random_vec(rng, size_t(n), 0.5f, 1.5f);
      std::vector<float> got(x.size()), want(x.size());
      rmsnorm(x.data(), w.data(), got.data(), m, n, 1e-5f, *pool);
      ref::rmsnorm(x.data(), w.data(), want.data(), m, n, 1e-5f);
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 2e-6 * std::fabs(want[i]) + 1e-7) << m << "x" << n;
      // in place
      std::vector<float> inplace = x;
      rmsnorm(inplace.data(), w.data(), inplace.data(), m, n, 1e-5f, *pool);
      EXPECT_EQ(inplace, got);
    }
  }
}

TEST(RmsNorm, KnownValues) {
  // mean square of (3, 4) is 12.5; eps 0
  const std::vector<float> x{3, 4}, w{1, 2};
  std::vector<float> y(2);
  ThreadPool pool(1);
  rmsnorm(x.data(), w.data(), y.data(), 1, 2, 0.0f, pool);
  EXPECT_NEAR(y[0], 3 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(y[1], 8 / std::sqrt(12.5), 1e-6);
}

TEST(Rope, MatchesReferenceUpToLongPositions) {
  ThreadPool p1(1), p2(2), p4(4);
  std::mt19937 rng(4);
  struct Case {
    int64_t m;
    int heads, d, n_rot;
    float base;
  };
  for (ThreadPool* pool : {&p1, &p2, &p4}) {
    for (const Case& c : {Case{1, 1, 2, 2, 10000.0f}, Case{3, 4, 16, 16, 10000.0f},
                          Case{7, 6, 64, 64, 500000.0f}, Case{5, 2, 48, 32, 10000.0f},
                          Case{64, 8, 128, 128, 10000.0f}}) {
      std::vector<int32_t> pos(size_t(c.m));
      std::uniform_int_distribution<int32_t> up(0, 32768);
      for (auto& p : pos) p = up(rng);
      pos[0] = 32768;
      if (c.m > 1) pos[1] = 0;
      const std::vector<float> x = random_vec(rng, size_t(c.m * c.heads * c.d), -2.0f, 2.0f);
      std::vector<float> got = x, want = x;
      rope(got.data(), c.m, c.heads, c.d, c.n_rot, pos.data(), c.base, *pool);
      ref::rope(want.data(), c.m, c.heads, c.d, c.n_rot, pos.data(), c.base);
      for (size_t k = 0; k < x.size(); k += 2) {
        const double mag = std::fabs(x[k]) + std::fabs(x[k + 1]);
        ASSERT_NEAR(got[k], want[k], 1e-5 * mag + 1e-30) << k;
        ASSERT_NEAR(got[k + 1], want[k + 1], 1e-5 * mag + 1e-30) << k;
      }
      // dims past n_rot are untouched
      for (int64_t t = 0; t < c.m * c.heads; ++t)
        for (int i = c.n_rot; i < c.d; ++i)
          ASSERT_EQ(got[size_t(t * c.d + i)], x[size_t(t * c.d + i)]);
    }
  }
}

TEST(Rope, KnownRotation) {
  // pair 0 rotates by pos radians, pair 1 (n_rot 4, base 100) by pos / 10
  std::vector<float> x{1, 0, 0, 1};
  const int32_t pos = 2;
  ThreadPool pool(1);
  rope(x.data(), 1, 1, 4, 4, &pos, 100.0f, pool);
  EXPECT_NEAR(x[0], std::cos(2.0), 1e-6);
  EXPECT_NEAR(x[1], std::sin(2.0), 1e-6);
  EXPECT_NEAR(x[2], -std::sin(0.2), 1e-6);
  EXPECT_NEAR(x[3], std::cos(0.2), 1e-6);
}

TEST(Swiglu, MatchesReference) {
  test::for_each_isa([&](const std::string&) {
    std::mt19937 rng(6);
    for (float range : {20.0f, 120.0f}) {
      for (int64_t n : {1, 5, 64, 1001}) {
        const std::vector<float> g = random_vec(rng, static_cast<size_t>(n), -range, range);
        const std::vector<float> u = random_vec(rng, g.size(), -2.0f, 2.0f);
        std::vector<float> got(g.size()), want(g.size());
        swiglu(g.data(), u.data(), got.data(), n);
        ref::swiglu(g.data(), u.data(), want.data(), n);
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_NEAR(got[i], want[i], 1e-6 * std::fabs(want[i]) + 1e-30) << g[i];
        std::vector<float> inplace = g;
        swiglu(inplace.data(), u.data(), inplace.data(), n);
        EXPECT_EQ(inplace, got);
      }
    }
    const std::vector<float> g{0.0f, 1.0f, -1.0f, 3.0f, 0.0f, 1.0f, -1.0f, 3.0f,
                               0.0f, 1.0f, -1.0f, 3.0f, 0.0f, 1.0f, -1.0f, 3.0f, 1.0f};
    const std::vector<float> u(g.size(), 2.0f);
    std::vector<float> out(g.size(), 5.0f);
    swiglu(g.data(), u.data(), out.data(), int64_t(g.size()));
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_NEAR(out[i], 2.0 * g[i] / (1.0 + std::exp(-double(g[i]))), 1e-6) << i;
  });
}

TEST(Add, MatchesReference) {
  std::mt19937 rng(8);
  const std::vector<float> x = random_vec(rng, 77);
  const std::vector<float> y0 = random_vec(rng, 77);
  std::vector<float> y = y0, want = y0;
  add(y.data(), x.data(), 77);
  ref::add(want.data(), x.data(), 77);
  EXPECT_EQ(y, want);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], y0[i] + x[i]);
}

}  // namespace
}  // namespace tandem::kernels
