// Backward of the elementwise ops (get_rows, rmsnorm, rope, swiglu) and the optimizer
// kernels (adamw_step, sum_squares):
//   - each reference (kernels::ref) against central finite differences of a float64
//     forward written here, for the loss L = sum(forward(inputs) * R) with R random, on
//     every input element and weight;
//   - each optimized op against its reference on every instruction set the CPU has, at
//     1, 2 and 3 threads, with odd sizes, the aliasing the header allows and gradients
//     accumulated into non-zero buffers;
//   - adamw_step over several steps, and sum_squares against a plain double sum and
//     across thread counts and instruction sets.
// Shapes: m rows (N tokens) of n (D model dim); rope rows are [heads][d].
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/kernels/backward_reference.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::kernels {
namespace {

using test::random_vec;

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// ---- finite differences -------------------------------------------------------------

// d loss / d v[i] for every i by central differences in float64: (L(v+h) - L(v-h)) / 2h.
// With h = 1e-6 on values of order 1 the truncation error is ~1e-12 and the rounding
// error ~1e-10 relative to L: far below the tolerance below.
template <class Loss>
std::vector<double> central_diff(std::vector<double> v, const Loss& loss) {
  constexpr double h = 1e-6;
  std::vector<double> g(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double v0 = v[i];
    v[i] = v0 + h;
    const double lp = loss(v);
    v[i] = v0 - h;
    const double lm = loss(v);
    v[i] = v0;
    g[i] = (lp - lm) / (2.0 * h);
  }
  return g;
}

// The references compute in double and round once to float, so they must match the
// finite differences to float precision: |got - want| <= 1e-5 |want| + 1e-6.
constexpr double kFdRel = 1e-5, kFdAbs = 1e-6;

void expect_grad(const std::vector<double>& got, const std::vector<double>& want,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], kFdRel * std::fabs(want[i]) + kFdAbs) << what << " [" << i
                                                                       << "]";
}

// What a reference added to a buffer that held before: after - before, exact in double.
std::vector<double> added(const std::vector<float>& after, const std::vector<float>& before) {
  std::vector<double> d(after.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = double(after[i]) - double(before[i]);
  return d;
}

// ---- float64 forwards: L = sum(forward * R) -----------------------------------------

// Embedding: out[i][c] = w[ids[i]][c].
double loss_embedding(const std::vector<double>& w, const std::vector<int32_t>& ids,
                      int64_t cols, const std::vector<float>& R) {
  double L = 0.0;
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < cols; ++c) L += w[size_t(ids[i] * cols + c)] * R[i * cols + c];
  return L;
}

// RMSNorm: y[i][j] = x[i][j] * w[j] / sqrt(mean_j x[i][j]^2 + eps).
double loss_rmsnorm(const std::vector<double>& x, const std::vector<double>& w, int64_t m,
                    int64_t n, double eps, const std::vector<float>& R) {
  double L = 0.0;
  for (int64_t i = 0; i < m; ++i) {
    double ss = 0.0;
    for (int64_t j = 0; j < n; ++j) ss += x[size_t(i * n + j)] * x[size_t(i * n + j)];
    const double r = 1.0 / std::sqrt(ss / double(n) + eps);
    for (int64_t j = 0; j < n; ++j) L += x[size_t(i * n + j)] * r * w[size_t(j)] * R[i * n + j];
  }
  return L;
}

// Rope: pair i of each head (dims 2i, 2i+1 or i, i + n_rot/2) rotated by rope_angle.
double loss_rope(std::vector<double> x, int64_t m, int heads, int d, const RopeSpec& r,
                 const std::vector<int32_t>& pos, const std::vector<float>& R) {
  const int half = r.n_rot / 2;
  const bool neox = r.style == RopeStyle::Neox;
  for (int64_t t = 0; t < m; ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < half; ++i) {
        double* v = x.data() + (t * heads + h) * d;
        const double th = rope_angle(r, pos[size_t(t)], i);
        const int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
        const double a = v[ia], b = v[ib];
        v[ia] = a * std::cos(th) - b * std::sin(th);
        v[ib] = a * std::sin(th) + b * std::cos(th);
      }
  double L = 0.0;
  for (size_t i = 0; i < x.size(); ++i) L += x[i] * R[i];
  return L;
}

// SwiGLU: out = gate / (1 + exp(-gate)) * up.
double loss_swiglu(const std::vector<double>& gate, const std::vector<double>& up,
                   const std::vector<float>& R) {
  double L = 0.0;
  for (size_t i = 0; i < gate.size(); ++i)
    L += gate[i] / (1.0 + std::exp(-gate[i])) * up[i] * R[i];
  return L;
}

// ---- (a) references against finite differences --------------------------------------

TEST(BackwardReferenceFd, GetRowsAccumulatesRepeatedIds) {
  std::mt19937 rng(11);
  const int64_t rows = 7;
  const std::vector<int32_t> ids{3, 0, 3, 6, 3, 5};
  for (int64_t cols : {1, 3, 17}) {
    const std::vector<float> w = random_vec(rng, size_t(rows * cols));
    const std::vector<float> R = random_vec(rng, ids.size() * size_t(cols));
    const std::vector<float> dw0 = random_vec(rng, w.size());  // accumulated into
    std::vector<float> dw = dw0;
    ref::get_rows_backward(ids.data(), int64_t(ids.size()), R.data(), cols, dw.data());
    const auto want = central_diff(to_double(w), [&](const std::vector<double>& v) {
      return loss_embedding(v, ids, cols, R);
    });
    expect_grad(added(dw, dw0), want, "dw cols " + std::to_string(cols));
  }
}

TEST(BackwardReferenceFd, RmsNorm) {
  std::mt19937 rng(12);
  for (auto [m, n] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {1, 3}, {2, 17}, {3, 5}, {2, 32}, {1, 33}}) {
    for (float eps : {1e-5f, 0.5f}) {
      const std::string what = std::to_string(m) + "x" + std::to_string(n) + " eps " +
                               std::to_string(eps);
      const std::vector<float> x = random_vec(rng, size_t(m * n), -2.0f, 2.0f);
      const std::vector<float> w = random_vec(rng, size_t(n), 0.5f, 1.5f);
      const std::vector<float> R = random_vec(rng, size_t(m * n));
      const std::vector<float> dw0 = random_vec(rng, size_t(n));
      std::vector<float> dx(x.size()), dw = dw0;
      ref::rmsnorm_backward(x.data(), w.data(), R.data(), dx.data(), dw.data(), m, n, eps);
      const auto xd = to_double(x), wd = to_double(w);
      const auto want_dx = central_diff(xd, [&](const std::vector<double>& v) {
        return loss_rmsnorm(v, wd, m, n, eps, R);
      });
      const auto want_dw = central_diff(wd, [&](const std::vector<double>& v) {
        return loss_rmsnorm(xd, v, m, n, eps, R);
      });
      expect_grad(to_double(dx), want_dx, "dx " + what);
      expect_grad(added(dw, dw0), want_dw, "dw " + what);
      // dx may be dy; dw may be null.
      std::vector<float> inplace = R;
      ref::rmsnorm_backward(x.data(), w.data(), inplace.data(), inplace.data(), nullptr, m, n,
                            eps);
      EXPECT_EQ(inplace, dx) << what;
    }
  }
}

TEST(BackwardReferenceFd, RopeBothStylesFactorsAndLargePositions) {
  std::mt19937 rng(13);
  struct Case {
    int64_t m;
    int heads, d, n_rot;
  };
  const std::vector<int32_t> pos_all{100000, 3, 77777, 0, 65535};
  for (const Case& c : {Case{1, 1, 2, 2}, Case{3, 2, 6, 4}, Case{2, 3, 8, 8},
                        Case{4, 1, 5, 4}, Case{5, 2, 16, 12}}) {
    const std::vector<int32_t> pos(pos_all.begin(), pos_all.begin() + c.m);
    const std::vector<float> factors = random_vec(rng, size_t(c.n_rot / 2), 1.0f, 8.0f);
    for (RopeStyle style : {RopeStyle::Adjacent, RopeStyle::Neox}) {
      for (bool scaled : {false, true}) {
        RopeSpec r;
        r.n_rot = c.n_rot;
        r.freq_base = scaled ? 500000.0f : 10000.0f;
        r.style = style;
        if (scaled) {
          r.freq_scale = 0.25f;
          r.freq_factors = factors.data();
        }
        const std::string what = std::to_string(c.m) + "x" + std::to_string(c.heads) + "x" +
                                 std::to_string(c.d) + " n_rot " + std::to_string(c.n_rot) +
                                 (style == RopeStyle::Neox ? " neox" : " adjacent") +
                                 (scaled ? " scaled" : "");
        const size_t size = size_t(c.m * c.heads * c.d);
        const std::vector<float> x = random_vec(rng, size, -2.0f, 2.0f);
        const std::vector<float> R = random_vec(rng, size);
        std::vector<float> dx = R;
        ref::rope_backward(dx.data(), c.m, c.heads, c.d, r, pos.data());
        const auto want = central_diff(to_double(x), [&](const std::vector<double>& v) {
          return loss_rope(v, c.m, c.heads, c.d, r, pos, R);
        });
        expect_grad(to_double(dx), want, what);
      }
    }
  }
}

TEST(BackwardReferenceFd, Swiglu) {
  std::mt19937 rng(14);
  for (size_t n : {1, 3, 17, 40}) {
    std::vector<float> gate = random_vec(rng, n, -8.0f, 8.0f);
    const std::vector<float> special{0.0f, -20.0f, 20.0f, 1e-3f, -1.2785f};
    for (size_t i = 0; i < std::min(n, special.size()); ++i) gate[i] = special[i];
    const std::vector<float> up = random_vec(rng, n, -2.0f, 2.0f);
    const std::vector<float> R = random_vec(rng, n);
    std::vector<float> dgate(n), dup(n);
    ref::swiglu_backward(gate.data(), up.data(), R.data(), dgate.data(), dup.data(),
                         int64_t(n));
    const auto gd = to_double(gate), ud = to_double(up);
    const auto want_dgate = central_diff(gd, [&](const std::vector<double>& v) {
      return loss_swiglu(v, ud, R);
    });
    const auto want_dup = central_diff(ud, [&](const std::vector<double>& v) {
      return loss_swiglu(gd, v, R);
    });
    expect_grad(to_double(dgate), want_dgate, "dgate n " + std::to_string(n));
    expect_grad(to_double(dup), want_dup, "dup n " + std::to_string(n));
  }
}

// ---- (b) optimized against the references --------------------------------------------

TEST(BackwardElementwise, GetRowsMatchesReferenceExactly) {
  // Same float additions in the same order (tokens in order) as the reference.
  std::mt19937 rng(21);
  const int64_t rows = 9;
  std::vector<int32_t> ids{4, 4, 0, 8, 4, 2, 2};
  std::uniform_int_distribution<int32_t> id(0, int32_t(rows - 1));
  for (int k = 0; k < 30; ++k) ids.push_back(id(rng));
  test::for_each_isa([&](const std::string&) {
    for (int64_t cols : {1, 3, 16, 17, 1000}) {
      const std::vector<float> dy = random_vec(rng, ids.size() * size_t(cols));
      const std::vector<float> dw0 = random_vec(rng, size_t(rows * cols));
      std::vector<float> got = dw0, want = dw0;
      get_rows_backward(ids.data(), int64_t(ids.size()), dy.data(), cols, got.data());
      ref::get_rows_backward(ids.data(), int64_t(ids.size()), dy.data(), cols, want.data());
      EXPECT_EQ(got, want) << "cols " << cols;
    }
  });
}

TEST(BackwardElementwise, RmsNormMatchesReference) {
  ThreadPool p1(1), p2(2), p3(3);
  std::mt19937 rng(22);
  const float eps = 1e-5f;
  test::for_each_isa([&](const std::string&) {
    for (ThreadPool* pool : {&p1, &p2, &p3}) {
      for (auto [m, n] : std::vector<std::pair<int64_t, int64_t>>{
               {1, 1}, {1, 7}, {3, 17}, {5, 333}, {64, 768}, {129, 1001}}) {
        SCOPED_TRACE(std::to_string(pool->size()) + " threads, " + std::to_string(m) + "x" +
                     std::to_string(n));
        const std::vector<float> x = random_vec(rng, size_t(m * n), -3.0f, 3.0f);
        const std::vector<float> w = random_vec(rng, size_t(n), 0.5f, 1.5f);
        const std::vector<float> dy = random_vec(rng, size_t(m * n));
        const std::vector<float> dw0 = random_vec(rng, size_t(n));  // accumulated into
        std::vector<float> dx(x.size()), want_dx(x.size()), dw = dw0, want_dw = dw0;
        rmsnorm_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), m, n, eps,
                         *pool);
        ref::rmsnorm_backward(x.data(), w.data(), dy.data(), want_dx.data(), want_dw.data(), m,
                              n, eps);
        // Tolerances from the size of the terms: dx = r dy w - x k (k = r^3 mean(dy w x))
        // cancels, so its error scales with |r dy w| + |x k|; dw sums |dy x r| over rows.
        std::vector<double> dw_terms(size_t(n), 0.0);
        for (int64_t i = 0; i < m; ++i) {
          double ss = 0.0, dot = 0.0;
          for (int64_t j = 0; j < n; ++j) {
            ss += double(x[i * n + j]) * x[i * n + j];
            dot += double(dy[i * n + j]) * w[j] * x[i * n + j];
          }
          const double r = 1.0 / std::sqrt(ss / double(n) + eps), k = r * r * r * dot / n;
          for (int64_t j = 0; j < n; ++j) {
            const size_t e = size_t(i * n + j);
            const double scale = std::fabs(r * dy[e] * w[j]) + std::fabs(x[e] * k);
            ASSERT_NEAR(dx[e], want_dx[e], 1e-5 * scale + 1e-7) << i << "," << j;
            dw_terms[size_t(j)] += std::fabs(double(dy[e]) * x[e] * r);
          }
        }
        for (int64_t j = 0; j < n; ++j)
          ASSERT_NEAR(dw[j], want_dw[j],
                      2e-6 * dw_terms[size_t(j)] + 1e-6 * std::fabs(want_dw[j]) + 1e-7)
              << "dw " << j;
        // dx == dy gives the same values; dw null leaves dx as it was.
        std::vector<float> inplace = dy, dw_inplace = dw0;
        rmsnorm_backward(x.data(), w.data(), inplace.data(), inplace.data(), dw_inplace.data(),
                         m, n, eps, *pool);
        EXPECT_EQ(inplace, dx);
        EXPECT_EQ(dw_inplace, dw);
        std::vector<float> dx_only(x.size());
        rmsnorm_backward(x.data(), w.data(), dy.data(), dx_only.data(), nullptr, m, n, eps,
                         *pool);
        for (size_t e = 0; e < dx.size(); ++e)
          ASSERT_NEAR(dx_only[e], dx[e], 1e-6 * std::fabs(dx[e]) + 1e-6) << e;
      }
    }
  });
}

TEST(BackwardElementwise, RopeMatchesReferenceAndInvertsForward) {
  ThreadPool p1(1), p2(2), p3(3);
  std::mt19937 rng(23);
  struct Case {
    int64_t m;
    int heads, d, n_rot;
    float base;
  };
  test::for_each_isa([&](const std::string&) {
    for (ThreadPool* pool : {&p1, &p2, &p3}) {
      for (const Case& c : {Case{1, 1, 2, 2, 10000.0f}, Case{3, 3, 10, 8, 10000.0f},
                            Case{7, 6, 64, 64, 500000.0f}, Case{5, 2, 48, 32, 10000.0f},
                            Case{65, 8, 128, 128, 10000.0f}}) {
        std::vector<int32_t> pos(size_t(c.m));
        std::uniform_int_distribution<int32_t> up(0, 200000);
        for (auto& p : pos) p = up(rng);  // not contiguous, up to 200000
        const std::vector<float> x = random_vec(rng, size_t(c.m * c.heads * c.d), -2.0f, 2.0f);
        const std::vector<float> factors = random_vec(rng, size_t(c.n_rot / 2), 1.0f, 8.0f);
        for (RopeStyle style : {RopeStyle::Adjacent, RopeStyle::Neox}) {
          for (bool scaled : {false, true}) {
            SCOPED_TRACE(std::to_string(pool->size()) + " threads, d " + std::to_string(c.d) +
                         (style == RopeStyle::Neox ? " neox" : " adjacent") +
                         (scaled ? " scaled" : ""));
            RopeSpec r;
            r.n_rot = c.n_rot;
            r.freq_base = c.base;
            r.style = style;
            if (scaled) {
              r.freq_scale = 0.25f;
              r.freq_factors = factors.data();
            }
            std::vector<float> got = x, want = x;
            rope_backward(got.data(), c.m, c.heads, c.d, r, pos.data(), *pool);
            ref::rope_backward(want.data(), c.m, c.heads, c.d, r, pos.data());
            std::vector<float> round = x;  // backward of forward: the identity
            rope(round.data(), c.m, c.heads, c.d, r, pos.data(), *pool);
            rope_backward(round.data(), c.m, c.heads, c.d, r, pos.data(), *pool);
            const int half = c.n_rot / 2;
            for (int64_t t = 0; t < c.m * c.heads; ++t) {
              for (int i = 0; i < half; ++i) {
                const size_t a = size_t(t * c.d) + size_t(style == RopeStyle::Neox ? i : 2 * i);
                const size_t b = a + size_t(style == RopeStyle::Neox ? half : 1);
                const double mag = std::fabs(x[a]) + std::fabs(x[b]);
                ASSERT_NEAR(got[a], want[a], 1e-5 * mag) << t << " " << i;
                ASSERT_NEAR(got[b], want[b], 1e-5 * mag) << t << " " << i;
                ASSERT_NEAR(round[a], x[a], 1e-5 * mag) << t << " " << i;
                ASSERT_NEAR(round[b], x[b], 1e-5 * mag) << t << " " << i;
              }
              for (int i = c.n_rot; i < c.d; ++i)  // dims past n_rot pass through
                ASSERT_EQ(got[size_t(t * c.d + i)], x[size_t(t * c.d + i)]);
            }
          }
        }
      }
    }
  });
}

TEST(BackwardElementwise, SwigluMatchesReferenceAndAllowsAliases) {
  std::mt19937 rng(24);
  test::for_each_isa([&](const std::string&) {
    for (int64_t n : {1, 3, 15, 16, 17, 33, 100, 1001}) {
      SCOPED_TRACE("n " + std::to_string(n));
      std::vector<float> gate = random_vec(rng, size_t(n), -12.0f, 12.0f);
      const std::vector<float> special{0.0f, -100.0f, 100.0f, -1.2785f, 30.0f, -30.0f};
      for (size_t i = 0; i < std::min(size_t(n), special.size()); ++i) gate[size_t(n) - 1 - i] =
          special[i];
      const std::vector<float> up = random_vec(rng, size_t(n), -2.0f, 2.0f);
      const std::vector<float> dout = random_vec(rng, size_t(n), -2.0f, 2.0f);
      const size_t un = size_t(n);
      std::vector<float> dgate(un), dup(un), want_dgate(un), want_dup(un);
      swiglu_backward(gate.data(), up.data(), dout.data(), dgate.data(), dup.data(), n);
      ref::swiglu_backward(gate.data(), up.data(), dout.data(), want_dgate.data(),
                           want_dup.data(), n);
      for (size_t i = 0; i < size_t(n); ++i) {
        // silu' = s (1 + g (1 - s)) cancels near g = -1.28: error relative to |dout up|.
        const double du = std::fabs(double(dout[i]) * up[i]);
        ASSERT_NEAR(dgate[i], want_dgate[i], 1e-5 * std::fabs(want_dgate[i]) + 1e-6 * du)
            << "dgate " << i << " gate " << gate[i];
        ASSERT_NEAR(dup[i], want_dup[i], 1e-5 * std::fabs(want_dup[i]) + 1e-30)
            << "dup " << i << " gate " << gate[i];
      }
      // dgate and dup may each be any input (not each other): 0 none, 1 gate, 2 up, 3 dout.
      for (int ag = 0; ag < 4; ++ag) {
        for (int au = 0; au < 4; ++au) {
          if (ag != 0 && ag == au) continue;
          std::vector<float> in[4] = {{}, gate, up, dout};
          std::vector<float> own_g(un), own_u(un);
          float* pg = ag ? in[ag].data() : own_g.data();
          float* pu = au ? in[au].data() : own_u.data();
          swiglu_backward(in[1].data(), in[2].data(), in[3].data(), pg, pu, n);
          ASSERT_TRUE(std::equal(pg, pg + n, dgate.begin())) << "dgate as " << ag << " dup as "
                                                              << au;
          ASSERT_TRUE(std::equal(pu, pu + n, dup.begin())) << "dgate as " << ag << " dup as "
                                                            << au;
        }
      }
    }
  });
}

// ---- (c) optimizer -------------------------------------------------------------------

// AdamW as textbooks write it (decoupled decay applied first), in double.
void textbook_adamw(std::vector<double>& p, const std::vector<float>& grad,
                    std::vector<double>& m, std::vector<double>& v, const AdamW& h,
                    int64_t step, double grad_scale) {
  for (size_t i = 0; i < p.size(); ++i) {
    const double g = grad[i] * grad_scale;
    p[i] *= 1.0 - double(h.lr) * h.weight_decay;
    m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g;
    v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g * g;
    const double mhat = m[i] / (1.0 - std::pow(double(h.beta1), double(step)));
    const double vhat = v[i] / (1.0 - std::pow(double(h.beta2), double(step)));
    p[i] -= h.lr * mhat / (std::sqrt(vhat) + h.eps);
  }
}

AdamW decayed() {
  AdamW h;
  h.lr = 1e-2f;
  h.beta2 = 0.999f;
  h.weight_decay = 0.1f;
  return h;
}

TEST(AdamWStep, ReferenceFirstStepAndTextbook) {
  std::mt19937 rng(31);
  const size_t n = 50;
  const AdamW h = decayed();
  // Step 1: m/bc1 = g and v/bc2 = g^2, so p -= lr (g / (|g| + eps) + wd p).
  {
    const std::vector<float> p0 = random_vec(rng, n), grad = random_vec(rng, n);
    std::vector<float> p = p0, m(n, 0.0f), v(n, 0.0f);
    ref::adamw_step(p.data(), grad.data(), m.data(), v.data(), int64_t(n), h, 1, 0.5f);
    for (size_t i = 0; i < n; ++i) {
      const double g = 0.5 * grad[i];
      const double want = p0[i] - h.lr * (g / (std::fabs(g) + h.eps) + h.weight_decay * p0[i]);
      ASSERT_NEAR(p[i], want, 1e-6 * std::fabs(want) + 1e-8) << i;
    }
  }
  // Seven steps against the textbook form in double (m, v and p stored as float between
  // the reference's steps).
  std::vector<float> p = random_vec(rng, n), m(n, 0.0f), v(n, 0.0f);
  std::vector<double> tp = to_double(p), tm(n, 0.0), tv(n, 0.0);
  for (int64_t step = 1; step <= 7; ++step) {
    const std::vector<float> grad = random_vec(rng, n, -3.0f, 3.0f);
    ref::adamw_step(p.data(), grad.data(), m.data(), v.data(), int64_t(n), h, step, 0.25f);
    textbook_adamw(tp, grad, tm, tv, h, step, 0.25);
  }
  for (size_t i = 0; i < n; ++i) {
    ASSERT_NEAR(p[i], tp[i], 1e-6 * std::fabs(tp[i]) + 1e-6 * h.lr) << i;
    ASSERT_NEAR(m[i], tm[i], 1e-6 * std::fabs(tm[i]) + 1e-7) << i;
    ASSERT_NEAR(v[i], tv[i], 1e-5 * std::fabs(tv[i])) << i;
  }
}

TEST(AdamWStep, MatchesReferenceOverStepsAndThreadCounts) {
  ThreadPool p1(1), p2(2), p3(3);
  std::mt19937 rng(32);
  constexpr int kSteps = 6;
  struct Case {
    AdamW h;
    float grad_scale;
  };
  test::for_each_isa([&](const std::string&) {
    for (const Case& c : {Case{AdamW{}, 1.0f}, Case{decayed(), 0.25f}}) {
      for (int64_t n : {1, 15, 17, 1000, 100003}) {
        const std::vector<float> p0 = random_vec(rng, size_t(n), -2.0f, 2.0f);
        std::vector<std::vector<float>> grads;
        for (int s = 0; s < kSteps; ++s) grads.push_back(random_vec(rng, size_t(n)));
        std::vector<float> want_p = p0, want_m(size_t(n), 0.0f), want_v(size_t(n), 0.0f);
        for (int s = 0; s < kSteps; ++s)
          ref::adamw_step(want_p.data(), grads[size_t(s)].data(), want_m.data(), want_v.data(),
                          n, c.h, s + 1, c.grad_scale);
        std::vector<float> first_p, first_m, first_v;  // of 1 thread
        for (ThreadPool* pool : {&p1, &p2, &p3}) {
          SCOPED_TRACE(std::to_string(pool->size()) + " threads, n " + std::to_string(n));
          std::vector<float> p = p0, m(size_t(n), 0.0f), v(size_t(n), 0.0f);
          for (int s = 0; s < kSteps; ++s)
            adamw_step(p.data(), grads[size_t(s)].data(), m.data(), v.data(), n, c.h, s + 1,
                       c.grad_scale, *pool);
          for (size_t i = 0; i < size_t(n); ++i) {
            ASSERT_NEAR(m[i], want_m[i], 1e-6 * std::fabs(want_m[i]) + 1e-7 * c.grad_scale)
                << "m " << i;
            ASSERT_NEAR(v[i], want_v[i], 1e-5 * std::fabs(want_v[i]) + 1e-30) << "v " << i;
            ASSERT_NEAR(p[i], want_p[i], 1e-6 * std::fabs(want_p[i]) + 1e-5 * c.h.lr * kSteps)
                << "p " << i;
          }
          // The result does not depend on the thread count (optimizer.cpp).
          if (pool == &p1) {
            first_p = p, first_m = m, first_v = v;
          } else {
            EXPECT_EQ(p, first_p);
            EXPECT_EQ(m, first_m);
            EXPECT_EQ(v, first_v);
          }
        }
      }
    }
  });
}

TEST(SumSquares, MatchesDoubleSumAndIsDeterministic) {
  ThreadPool p1(1), p2(2), p3(3);
  std::mt19937 rng(33);
  // Sizes around the implementation's chunk (16384 values) and past several chunks.
  for (int64_t n : std::vector<int64_t>{0, 1, 17, 16383, 16384, 16385, 3 * 16384 + 5,
                                        (int64_t(1) << 20) + 3}) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<float> x = random_vec(rng, size_t(n), -3.0f, 3.0f);
    std::uniform_int_distribution<int> e(-10, 10);
    for (auto& val : x) val = std::ldexp(val, e(rng));  // magnitudes 2^-10 .. 2^10
    double want = 0.0;
    for (const float val : x) want += double(val) * val;
    bool have = false;
    double first = 0.0;
    test::for_each_isa([&](const std::string&) {
      for (ThreadPool* pool : {&p1, &p2, &p3}) {
        const double got = sum_squares(x.data(), n, *pool);
        ASSERT_NEAR(got, want, 1e-12 * want) << pool->size() << " threads";
        // Same bits for every thread count and instruction set (optimizer.cpp).
        if (!have) {
          first = got;
          have = true;
        }
        EXPECT_EQ(got, first) << pool->size() << " threads";
      }
    });
  }
}

}  // namespace
}  // namespace tandem::kernels
