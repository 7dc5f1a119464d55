// get_rows, rmsnorm (whole rows and per-head runs), rope (adjacent and Neox pairs,
// frequency factors and scale), swiglu, geglu, softcap, scale and add against the scalar
// references.
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
                          Case{64, 8, 128, 128, 10000.0f}, Case{3, 2, 512, 512, 10000.0f}}) {
      std::vector<int32_t> pos(size_t(c.m));
      std::uniform_int_distribution<int32_t> up(0, 32768);
      for (auto& p : pos) p = up(rng);
      pos[0] = 32768;
      if (c.m > 1) pos[1] = 0;
      const std::vector<float> x = random_vec(rng, size_t(c.m * c.heads * c.d), -2.0f, 2.0f);
      const std::vector<float> factors = random_vec(rng, size_t(c.n_rot / 2), 1.0f, 8.0f);
      for (RopeStyle style : {RopeStyle::Adjacent, RopeStyle::Neox}) {
        for (bool scaled : {false, true}) {
          RopeSpec r;
          r.n_rot = c.n_rot;
          r.freq_base = c.base;
          r.style = style;
          if (scaled) {
            r.freq_scale = 0.25f;
            r.freq_factors = factors.data();
          }
          std::vector<float> got = x, want = x;
          rope(got.data(), c.m, c.heads, c.d, r, pos.data(), *pool);
          ref::rope(want.data(), c.m, c.heads, c.d, r, pos.data());
          // Pair i of each head: dims (2i, 2i+1) or (i, i + n_rot/2).
          const int half = c.n_rot / 2;
          for (int64_t t = 0; t < c.m * c.heads; ++t)
            for (int i = 0; i < half; ++i) {
              const size_t a = size_t(t * c.d) + size_t(style == RopeStyle::Neox ? i : 2 * i);
              const size_t b = a + size_t(style == RopeStyle::Neox ? half : 1);
              const double mag = std::fabs(x[a]) + std::fabs(x[b]);
              ASSERT_NEAR(got[a], want[a], 1e-5 * mag + 1e-30) << t << " " << i;
              ASSERT_NEAR(got[b], want[b], 1e-5 * mag + 1e-30) << t << " " << i;
            }
          // dims past n_rot are untouched
          for (int64_t t = 0; t < c.m * c.heads; ++t)
            for (int i = c.n_rot; i < c.d; ++i)
              ASSERT_EQ(got[size_t(t * c.d + i)], x[size_t(t * c.d + i)]);
        }
      }
    }
  }
}

TEST(Rope, KnownRotation) {
  // pair 0 rotates by pos radians, pair 1 (n_rot 4, base 100) by pos / 10
  std::vector<float> x{1, 0, 0, 1};
  const int32_t pos = 2;
  ThreadPool pool(1);
  RopeSpec r;
  r.n_rot = 4;
  r.freq_base = 100.0f;
  rope(x.data(), 1, 1, 4, r, &pos, pool);
  EXPECT_NEAR(x[0], std::cos(2.0), 1e-6);
  EXPECT_NEAR(x[1], std::sin(2.0), 1e-6);
  EXPECT_NEAR(x[2], -std::sin(0.2), 1e-6);
  EXPECT_NEAR(x[3], std::cos(0.2), 1e-6);
}

// Neox pairs dim i with dim i + n_rot/2; the factors divide, freq_scale multiplies the angle.
TEST(Rope, KnownNeoxRotationWithFactorsAndScale) {
  for (bool ref_kernel : {false, true}) {
    // d 6, n_rot 4: pairs (0, 2) by pos * 0.5 / 2 and (1, 3) by pos * 0.5 / 10 / 4; 4, 5 stay.
    std::vector<float> x{1, 1, 0, 0, 7, 9};
    const int32_t pos = 2;
    const float factors[2] = {2.0f, 4.0f};
    RopeSpec r;
    r.n_rot = 4;
    r.freq_base = 100.0f;
    r.freq_scale = 0.5f;
    r.freq_factors = factors;
    r.style = RopeStyle::Neox;
    ThreadPool pool(1);
    if (ref_kernel)
      ref::rope(x.data(), 1, 1, 6, r, &pos);
    else
      rope(x.data(), 1, 1, 6, r, &pos, pool);
    EXPECT_NEAR(x[0], std::cos(0.5), 1e-6) << ref_kernel;
    EXPECT_NEAR(x[2], std::sin(0.5), 1e-6) << ref_kernel;
    EXPECT_NEAR(x[1], std::cos(0.025), 1e-6) << ref_kernel;
    EXPECT_NEAR(x[3], std::sin(0.025), 1e-6) << ref_kernel;
    EXPECT_EQ(x[4], 7.0f);
    EXPECT_EQ(x[5], 9.0f);
  }
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

// gelu(g) * u with the tanh approximation, written out here.
double gelu_tanh(double g) {
  return 0.5 * g * (1.0 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
}

TEST(GeGlu, MatchesReferenceAndFormula) {
  std::mt19937 rng(10);
  for (float range : {0.5f, 6.0f, 40.0f}) {
    for (int64_t n : {1, 7, 64, 1001}) {
      const std::vector<float> g = random_vec(rng, static_cast<size_t>(n), -range, range);
      const std::vector<float> u = random_vec(rng, g.size(), -2.0f, 2.0f);
      std::vector<float> got(g.size()), want(g.size());
      geglu(g.data(), u.data(), got.data(), n);
      ref::geglu(g.data(), u.data(), want.data(), n);
      for (size_t i = 0; i < got.size(); ++i) {
        const double exact = gelu_tanh(g[i]) * u[i];
        ASSERT_NEAR(want[i], exact, 1e-6 * std::fabs(exact) + 1e-30) << g[i];
        ASSERT_NEAR(got[i], want[i], 2e-6 * (std::fabs(g[i] * u[i])) + 1e-30) << g[i];
      }
      std::vector<float> inplace = g;
      geglu(inplace.data(), u.data(), inplace.data(), n);
      EXPECT_EQ(inplace, got);
    }
  }
  // gelu(0) = 0, gelu(x) ~ x for large x, ~ 0 for very negative x
  const std::vector<float> g{0.0f, 10.0f, -10.0f}, u{1.0f, 1.0f, 1.0f};
  std::vector<float> out(3);
  geglu(g.data(), u.data(), out.data(), 3);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_NEAR(out[1], 10.0f, 1e-5);
  EXPECT_NEAR(out[2], 0.0f, 1e-5);
}

TEST(SoftCap, MatchesReferenceAndBound) {
  std::mt19937 rng(11);
  for (float cap : {5.0f, 30.0f, 50.0f}) {
    const std::vector<float> x = random_vec(rng, 999, -400.0f, 400.0f);
    std::vector<float> got(x.size()), want(x.size());
    softcap(x.data(), got.data(), int64_t(x.size()), cap);
    ref::softcap(x.data(), want.data(), int64_t(x.size()), cap);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(want[i], cap * std::tanh(double(x[i]) / cap), 1e-6 * cap) << x[i];
      ASSERT_NEAR(got[i], want[i], 2e-6 * cap) << x[i];
      ASSERT_LE(std::fabs(got[i]), cap);
    }
    // small values pass nearly unchanged
    const float small = 0.01f;
    float y = 0;
    softcap(&small, &y, 1, cap);
    EXPECT_NEAR(y, small, 1e-7);
  }
}

TEST(Scale, MatchesReference) {
  std::mt19937 rng(12);
  const std::vector<float> x = random_vec(rng, 100);
  std::vector<float> got = x, want = x;
  scale(got.data(), 100, 5.656854f);
  ref::scale(want.data(), 100, 5.656854f);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6 * std::fabs(want[i]));
}

// The per-head norm of Q and K is RMSNorm over runs of d values (m tokens x heads runs,
// one weight vector of d): each head normalized on its own, written out here.
TEST(RmsNorm, PerHeadRunsNormalizeEachHead) {
  ThreadPool pool(2);
  std::mt19937 rng(13);
  const int64_t m = 5, heads = 3, d = 12;
  const std::vector<float> x = random_vec(rng, size_t(m * heads * d), -3.0f, 3.0f);
  const std::vector<float> w = random_vec(rng, size_t(d), 0.5f, 1.5f);
  std::vector<float> got(x.size()), plain(x.size());
  rmsnorm(x.data(), w.data(), got.data(), m * heads, d, 1e-6f, pool);
  for (int64_t t = 0; t < m; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      const float* v = x.data() + (t * heads + h) * d;
      double ss = 0;
      for (int64_t c = 0; c < d; ++c) ss += double(v[c]) * v[c];
      const double inv = 1.0 / std::sqrt(ss / double(d) + 1e-6);
      for (int64_t c = 0; c < d; ++c)
        plain[size_t((t * heads + h) * d + c)] = float(v[c] * inv * w[size_t(c)]);
    }
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(got[i], plain[i], 2e-6 * std::fabs(plain[i]) + 1e-7);
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
