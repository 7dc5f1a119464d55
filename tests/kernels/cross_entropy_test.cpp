// The output head fused with cross-entropy (cross_entropy):
//  - the reference against a float64 forward: its loss and correct count, and its dx and
//    dw against central finite differences of that loss for every element of x and w;
//  - the optimized op against the reference on every instruction set, 1-3 threads:
//    ignored targets, V not a multiple of anything, block_tokens smaller and larger than
//    m (and not dividing it), blocks whose tokens are all ignored, dw accumulated into
//    a non-zero buffer, loss only (dw and dx null), dx without dw and dw without dx,
//    large logits, and ties in the correct count.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernel_test_util.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/kernels/backward_reference.hpp"

namespace tandem::kernels {
namespace {

using test::random_vec;

struct Problem {
  int64_t m, D, V;
  std::vector<float> x, w;
  std::vector<int32_t> target;
};

// x in [-xs, xs], w in [-1, 1]; about one target in five ignored (-1 or -100).
Problem make_problem(std::mt19937& rng, int64_t m, int64_t D, int64_t V, float xs = 1.0f) {
  Problem p{m, D, V, random_vec(rng, size_t(m * D), -xs, xs), random_vec(rng, size_t(V * D)), {}};
  std::uniform_int_distribution<int32_t> tv(0, int32_t(V - 1));
  std::uniform_int_distribution<int> ig(0, 9);
  for (int64_t i = 0; i < m; ++i) {
    const int r = ig(rng);
    p.target.push_back(r == 0 ? -1 : r == 1 ? -100 : tv(rng));
  }
  return p;
}

CrossEntropyArgs args_of(const Problem& p, float grad_scale, float* dx, float* dw,
                         int64_t block, int64_t* correct) {
  CrossEntropyArgs a;
  a.x = p.x.data();
  a.w = p.w.data();
  a.target = p.target.data();
  a.m = p.m;
  a.D = p.D;
  a.V = p.V;
  a.grad_scale = grad_scale;
  a.dx = dx;
  a.dw = dw;
  a.block_tokens = block;
  a.correct = correct;
  return a;
}

// The loss in float64 from double copies of x and w.
double loss64(const std::vector<double>& x, const std::vector<double>& w,
              const std::vector<int32_t>& target, int64_t m, int64_t D, int64_t V) {
  double loss = 0.0;
  std::vector<double> l(static_cast<size_t>(V));
  for (int64_t i = 0; i < m; ++i) {
    if (target[size_t(i)] < 0) continue;
    double mx = -1e300;
    for (int64_t v = 0; v < V; ++v) {
      double s = 0.0;
      for (int64_t c = 0; c < D; ++c) s += x[size_t(i * D + c)] * w[size_t(v * D + c)];
      l[size_t(v)] = s;
      mx = std::max(mx, s);
    }
    double sum = 0.0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(l[size_t(v)] - mx);
    loss += mx + std::log(sum) - l[size_t(target[size_t(i)])];
  }
  return loss;
}

// Reference: loss against the float64 forward (1e-12 relative), the correct count
// against an argmax of its logits, and dx, dw against central differences (step 1e-4:
// truncation ~1e-9 for these O(1) curvatures, f32 rounding of the outputs ~1e-7;
// tolerance 1e-6 absolute plus 1e-6 relative).
TEST(CrossEntropyRef, MatchesFiniteDifferences) {
  std::mt19937 rng(21);
  struct Shape {
    int64_t m, D, V;
  };
  for (const Shape s : {Shape{5, 7, 11}, Shape{1, 3, 2}, Shape{6, 4, 9}}) {
    SCOPED_TRACE(testing::Message() << "m " << s.m << " D " << s.D << " V " << s.V);
    Problem p = make_problem(rng, s.m, s.D, s.V, 1.5f);
    p.target[0] = int32_t(s.V - 1);  // at least one counted token
    if (s.m > 2) p.target[2] = -1;   // and one ignored
    const float scale = 0.37f;
    std::vector<float> dx(size_t(s.m * s.D), 555.0f);
    std::vector<float> dw = random_vec(rng, size_t(s.V * s.D));
    const std::vector<float> dw0 = dw;
    int64_t correct = -1;
    const double loss = ref::cross_entropy(args_of(p, scale, dx.data(), dw.data(), 2, &correct));

    std::vector<double> x64(p.x.begin(), p.x.end()), w64(p.w.begin(), p.w.end());
    auto L = [&] { return loss64(x64, w64, p.target, s.m, s.D, s.V); };
    EXPECT_NEAR(loss, L(), 1e-12 * (1.0 + std::fabs(L())));
    int64_t want_correct = 0;
    for (int64_t i = 0; i < s.m; ++i) {
      if (p.target[size_t(i)] < 0) continue;
      int64_t best = 0;
      double bl = -1e300;
      for (int64_t v = 0; v < s.V; ++v) {
        double l = 0.0;
        for (int64_t c = 0; c < s.D; ++c) l += x64[size_t(i * s.D + c)] * w64[size_t(v * s.D + c)];
        if (l > bl) bl = l, best = v;
      }
      want_correct += best == p.target[size_t(i)];
    }
    EXPECT_EQ(correct, want_correct);

    const double h = 1e-4;
    for (size_t k = 0; k < x64.size(); ++k) {
      const double keep = x64[k];
      x64[k] = keep + h;
      const double up = L();
      x64[k] = keep - h;
      const double down = L();
      x64[k] = keep;
      const double g = scale * (up - down) / (2 * h);
      EXPECT_NEAR(dx[k], g, 1e-6 * (1.0 + std::fabs(g))) << "dx " << k;
    }
    for (int64_t t = 0; t < s.m; ++t)
      if (p.target[size_t(t)] < 0)
        for (int64_t c = 0; c < s.D; ++c) {
          EXPECT_EQ(dx[size_t(t * s.D + c)], 0.0f);
        }
    for (size_t k = 0; k < w64.size(); ++k) {
      const double keep = w64[k];
      w64[k] = keep + h;
      const double up = L();
      w64[k] = keep - h;
      const double down = L();
      w64[k] = keep;
      const double g = scale * (up - down) / (2 * h);
      EXPECT_NEAR(dw[k], dw0[k] + g, 1e-6 * (2.0 + std::fabs(g))) << "dw " << k;
    }
  }
}

// Per-token float64 softmax of a problem (for the tolerances below).
struct Softmax64 {
  std::vector<double> p;    // [m][V]
  std::vector<double> dl;   // [m]: bound of the f32 logits' rounding
};
Softmax64 softmax64(const Problem& pr) {
  Softmax64 s;
  s.p.assign(size_t(pr.m * pr.V), 0.0);
  s.dl.assign(size_t(pr.m), 0.0);
  for (int64_t i = 0; i < pr.m; ++i) {
    std::vector<double> l(static_cast<size_t>(pr.V));
    double mx = -1e300, mag = 0.0;
    for (int64_t v = 0; v < pr.V; ++v) {
      double sum = 0.0, a = 0.0;
      for (int64_t c = 0; c < pr.D; ++c) {
        const double t = double(pr.x[size_t(i * pr.D + c)]) * pr.w[size_t(v * pr.D + c)];
        sum += t;
        a += std::fabs(t);
      }
      l[size_t(v)] = sum;
      mx = std::max(mx, sum);
      mag = std::max(mag, a);
    }
    // f32 sums of D products: eps * sqrt(D) * sum of sizes, 8x margin (matmul_test).
    s.dl[size_t(i)] = 8.0 * 6e-8 * std::sqrt(double(pr.D) + 1.0) * mag;
    double z = 0.0;
    for (int64_t v = 0; v < pr.V; ++v) z += std::exp(l[size_t(v)] - mx);
    for (int64_t v = 0; v < pr.V; ++v) s.p[size_t(i * pr.V + v)] = std::exp(l[size_t(v)] - mx) / z;
  }
  return s;
}

// Tolerances of the optimized op against the reference. With logits off by dl (f32
// products), the softmax is off by about p * 2 dl, and its f32 exp and sums by a few
// 1e-7 relative (vexp, chunked f32 sums), so g_v is off by e * (p_v + onehot_v) * |scale|
// with e = 4 dl + 8e-6; dx and dw sum such terms in f32 (eps * sqrt(terms), 8x margin):
//   dx[i][c]: (e_i + 5e-7 sqrt(V)) * sum_v (p_iv + onehot) |scale| |w_vc|
//   dw[v][c]: sum_i (e_i + 5e-7 sqrt(m)) * (p_iv + onehot) |scale| |x_ic|
//             + 8 eps sqrt(m) |start| + 4 ulp of the result
//   loss:     sum_i (2 dl_i + 2e-6 (1 + log V)).
void check_against_ref(const Problem& pr, int64_t block, ThreadPool& pool, std::mt19937& rng,
                       const Softmax64& sm) {
  const float scale = 1.0f / 7.0f;
  const std::vector<float> dw0 = random_vec(rng, size_t(pr.V * pr.D), -2.0f, 2.0f);
  std::vector<float> dx(size_t(pr.m * pr.D), 999.0f), dw = dw0;
  std::vector<float> rdx(dx.size()), rdw = dw0;
  int64_t correct = -1, rcorrect = -2;
  const double loss = cross_entropy(args_of(pr, scale, dx.data(), dw.data(), block, &correct), pool);
  const double rloss = ref::cross_entropy(args_of(pr, scale, rdx.data(), rdw.data(), block, &rcorrect));
  double ltol = 0.0;
  for (int64_t i = 0; i < pr.m; ++i)
    if (pr.target[size_t(i)] >= 0)
      ltol += 2 * sm.dl[size_t(i)] + 2e-6 * (1.0 + std::log(double(pr.V)));
  ASSERT_NEAR(loss, rloss, ltol);
  ASSERT_EQ(correct, rcorrect);
  auto weight = [&](int64_t i, int64_t v) {
    const int32_t t = pr.target[size_t(i)];
    if (t < 0) return 0.0;
    return (sm.p[size_t(i * pr.V + v)] + (v == t ? 1.0 : 0.0)) * double(scale);
  };
  for (int64_t i = 0; i < pr.m; ++i)
    for (int64_t c = 0; c < pr.D; ++c) {
      double mag = 0.0;
      for (int64_t v = 0; v < pr.V; ++v) mag += weight(i, v) * std::fabs(pr.w[size_t(v * pr.D + c)]);
      const double e = 4 * sm.dl[size_t(i)] + 8e-6 + 5e-7 * std::sqrt(double(pr.V));
      const size_t k = size_t(i * pr.D + c);
      if (pr.target[size_t(i)] < 0) {
        ASSERT_EQ(dx[k], 0.0f) << "ignored token " << i;
      }
      ASSERT_NEAR(dx[k], rdx[k], e * mag + 1e-30) << "dx token " << i << " col " << c;
    }
  for (int64_t v = 0; v < pr.V; ++v)
    for (int64_t c = 0; c < pr.D; ++c) {
      double t = 0.0;
      for (int64_t i = 0; i < pr.m; ++i) {
        const double e = 4 * sm.dl[size_t(i)] + 8e-6 + 5e-7 * std::sqrt(double(pr.m));
        t += e * weight(i, v) * std::fabs(pr.x[size_t(i * pr.D + c)]);
      }
      const size_t k = size_t(v * pr.D + c);
      // The start value rides along the f32 sum of m terms (kernels that add each
      // token's term to it), and the result is rounded.
      t += 8.0 * 6e-8 * std::sqrt(double(pr.m) + 1.0) * std::fabs(dw0[k]) +
           2.4e-7 * std::fabs(rdw[k]);
      ASSERT_NEAR(dw[k], rdw[k], t) << "dw row " << v << " col " << c;
    }

  // Loss only: the same loss and count; dx without dw, dw without dx: the same values.
  int64_t c2 = -1;
  const double lo = cross_entropy(args_of(pr, scale, nullptr, nullptr, block, &c2), pool);
  ASSERT_NEAR(lo, rloss, ltol);
  ASSERT_EQ(c2, rcorrect);
  std::vector<float> dx2(dx.size(), 7.0f);
  cross_entropy(args_of(pr, scale, dx2.data(), nullptr, block, nullptr), pool);
  for (size_t k = 0; k < dx.size(); ++k) ASSERT_EQ(dx2[k], dx[k]) << "dx without dw " << k;
  std::vector<float> dw2 = dw0;
  cross_entropy(args_of(pr, scale, nullptr, dw2.data(), block, nullptr), pool);
  for (size_t k = 0; k < dw.size(); ++k) ASSERT_EQ(dw2[k], dw[k]) << "dw without dx " << k;
}

TEST(CrossEntropy, MatchesReference) {
  std::mt19937 rng(22);
  struct Case {
    int64_t m, D, V, block;
    float xs;
  };
  const Case cases[] = {
      {1, 16, 10, 64, 1.0f},   {7, 33, 101, 3, 1.0f},  {20, 48, 257, 7, 1.0f},
      {33, 64, 1000, 64, 1.0f}, {50, 17, 33, 1, 1.0f}, {64, 96, 517, 16, 0.5f},
      {37, 40, 300, 8, 1.0f},  {24, 20, 129, 24, 30.0f},  // large logits: |logit| ~ 100s
  };
  test::for_each_isa([&](const std::string&) {
    for (const Case& cs : cases) {
      SCOPED_TRACE(testing::Message() << "m " << cs.m << " D " << cs.D << " V " << cs.V
                                      << " block " << cs.block);
      Problem pr = make_problem(rng, cs.m, cs.D, cs.V, cs.xs);
      const Softmax64 sm = softmax64(pr);
      for (int threads : {1, 2, 3}) {
        SCOPED_TRACE(testing::Message() << "threads " << threads);
        ThreadPool pool(threads);
        check_against_ref(pr, cs.block, pool, rng, sm);
      }
    }
  });
}

// A block whose tokens are all ignored: zero dx rows, nothing added to dw, no loss.
TEST(CrossEntropy, AllIgnoredBlock) {
  std::mt19937 rng(23);
  Problem pr = make_problem(rng, 12, 24, 50);
  for (int i = 0; i < 12; ++i) pr.target[size_t(i)] = i < 4 ? -1 : i;
  ThreadPool pool(2);
  test::for_each_isa([&](const std::string&) {
    check_against_ref(pr, 4, pool, rng, softmax64(pr));
    for (auto& t : pr.target) t = -1;
    std::vector<float> dx(size_t(12 * 24), 3.0f), dw(size_t(50 * 24), 1.5f);
    int64_t correct = -1;
    EXPECT_EQ(cross_entropy(args_of(pr, 1.0f, dx.data(), dw.data(), 4, &correct), pool), 0.0);
    EXPECT_EQ(correct, 0);
    for (float v : dx) ASSERT_EQ(v, 0.0f);
    for (float v : dw) ASSERT_EQ(v, 1.5f);
    for (int i = 0; i < 12; ++i) pr.target[size_t(i)] = i < 4 ? -1 : i;
  });
}

// Ties for the highest logit count for the lowest id: rows 2 and 4 of w are equal and
// give every token its highest logit, so a target of 2 is correct and one of 4 is not.
TEST(CrossEntropy, CorrectCountTies) {
  std::mt19937 rng(24);
  const int64_t m = 10, D = 16, V = 7;
  Problem pr = make_problem(rng, m, D, V);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < D; ++c) pr.x[size_t(i * D + c)] = 0.5f + 0.01f * float(c);
  for (int64_t c = 0; c < D; ++c) {
    pr.w[size_t(2 * D + c)] = 1.0f;
    pr.w[size_t(4 * D + c)] = 1.0f;
  }
  for (int64_t i = 0; i < m; ++i) pr.target[size_t(i)] = i % 3 == 0 ? 2 : i % 3 == 1 ? 4 : -1;
  ThreadPool pool(2);
  test::for_each_isa([&](const std::string&) {
    for (int64_t block : {int64_t(3), int64_t(16)}) {
      int64_t correct = -1, rcorrect = -1;
      cross_entropy(args_of(pr, 1.0f, nullptr, nullptr, block, &correct), pool);
      ref::cross_entropy(args_of(pr, 1.0f, nullptr, nullptr, block, &rcorrect));
      EXPECT_EQ(rcorrect, 4);  // tokens 0, 3, 6, 9
      EXPECT_EQ(correct, 4);
    }
  });
}

}  // namespace
}  // namespace tandem::kernels
