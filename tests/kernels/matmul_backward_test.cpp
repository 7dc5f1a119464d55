// Gradients of the dense f32 products y[i][r] = sum_c x[i][c] * w[r][c]:
//  - the references (ref::matmul_dx, ref::matmul_dw) against central finite differences
//    of a float64 forward with the scalar loss sum(y * R), for every element of x and w;
//  - the optimized kernels (matmul_dx, matmul_dw) against the references on every
//    instruction set, 1-3 threads, odd shapes and tails (m = 1, rows and cols not
//    multiples of the vector width or register tile, depths past one block), written
//    and accumulated dx, dw accumulated into non-zero buffers.
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

// loss = sum_i sum_r y[i][r] * R[i][r], y = x . w^T, all in float64.
double loss64(const std::vector<double>& x, const std::vector<double>& w,
              const std::vector<double>& R, int64_t m, int64_t rows, int64_t cols) {
  double loss = 0.0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      double y = 0.0;
      for (int64_t c = 0; c < cols; ++c) y += x[size_t(i * cols + c)] * w[size_t(r * cols + c)];
      loss += y * R[size_t(i * rows + r)];
    }
  return loss;
}

std::vector<double> to64(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// d loss / d v[k] by central differences (step h) for every k.
template <typename Loss>
std::vector<double> central_diff(std::vector<double>& v, double h, Loss&& loss) {
  std::vector<double> g(v.size());
  for (size_t k = 0; k < v.size(); ++k) {
    const double keep = v[k];
    v[k] = keep + h;
    const double up = loss();
    v[k] = keep - h;
    const double down = loss();
    v[k] = keep;
    g[k] = (up - down) / (2 * h);
  }
  return g;
}

// The loss is bilinear, so central differences are exact up to the rounding of the
// float64 loss (~1e-16 * |terms| / h); the references round their double sums to f32
// once (2^-24 relative). Tolerance: 1e-6 of the gradient's scale plus 1e-7 absolute.
TEST(MatmulBackwardRef, MatchesFiniteDifferences) {
  std::mt19937 rng(11);
  struct Shape {
    int64_t m, rows, cols;
  };
  for (const Shape s : {Shape{1, 1, 1}, Shape{3, 5, 7}, Shape{4, 9, 2}, Shape{2, 3, 11}}) {
    SCOPED_TRACE(testing::Message() << "m " << s.m << " rows " << s.rows << " cols " << s.cols);
    const std::vector<float> x = random_vec(rng, size_t(s.m * s.cols));
    const std::vector<float> w = random_vec(rng, size_t(s.rows * s.cols));
    const std::vector<float> R = random_vec(rng, size_t(s.m * s.rows));
    std::vector<double> x64 = to64(x), w64 = to64(w);
    const std::vector<double> R64 = to64(R);
    auto loss = [&] { return loss64(x64, w64, R64, s.m, s.rows, s.cols); };
    const std::vector<double> gx = central_diff(x64, 1e-3, loss);
    const std::vector<double> gw = central_diff(w64, 1e-3, loss);

    // dx written over garbage, and accumulated onto a known start.
    std::vector<float> dx(x.size(), 777.0f);
    ref::matmul_dx(w.data(), s.rows, s.cols, R.data(), s.m, dx.data(), false);
    for (size_t k = 0; k < x.size(); ++k)
      EXPECT_NEAR(dx[k], gx[k], 1e-6 * (1.0 + std::fabs(gx[k])) + 1e-7) << "dx " << k;
    std::vector<float> dxa = random_vec(rng, x.size());
    const std::vector<float> start = dxa;
    ref::matmul_dx(w.data(), s.rows, s.cols, R.data(), s.m, dxa.data(), true);
    for (size_t k = 0; k < x.size(); ++k)
      EXPECT_NEAR(dxa[k], start[k] + gx[k], 1e-6 * (2.0 + std::fabs(gx[k]))) << "dx+ " << k;

    // dw accumulated onto a non-zero start.
    std::vector<float> dw = random_vec(rng, w.size());
    const std::vector<float> dw0 = dw;
    ref::matmul_dw(R.data(), x.data(), s.m, s.rows, s.cols, dw.data());
    for (size_t k = 0; k < w.size(); ++k)
      EXPECT_NEAR(dw[k], dw0[k] + gw[k], 1e-6 * (2.0 + std::fabs(gw[k]))) << "dw " << k;
  }
}

// f32 sums of K products against the double reference: rounding grows like
// eps * sqrt(K) times the sum of the terms' sizes (8x margin, as matmul_test), the start
// value (accumulate) included, as it rides along the sum; plus 4 ulp of the result. A
// dropped or doubled term of typical size (~mag / K) stays above it for K < ~10^4.
double tol(double mag, int64_t K, double start, double want) {
  return 8.0 * 6e-8 * std::sqrt(double(K) + 1.0) * (mag + std::fabs(start)) +
         2.4e-7 * std::fabs(want) + 1e-30;
}

struct Case {
  int64_t m, rows, cols;
};
// Odd and edge shapes: m = 1; rows and cols below, at and past a vector (16, 8) and a
// register tile (AVX-512 8 x 48, AVX2 6 x 16, generic 4 x 4); depths (rows for dx, m for
// dw) past one pass of 512; token counts (dx) and row counts (dw) past one A block
// (64 Ki floats over the pass's depth: 216 rows at depth 300, 240 at 265).
const Case kCases[] = {{1, 1, 1},     {1, 17, 33},    {3, 5, 7},       {2, 64, 48},
                       {13, 31, 47},  {15, 14, 32},   {29, 30, 16},    {37, 70, 100},
                       {64, 64, 64},  {1, 300, 40},   {5, 600, 97},    {231, 45, 36},
                       {300, 29, 21}, {260, 240, 290}, {7, 3, 530},    {300, 600, 40},
                       {530, 300, 20}, {16, 8, 96}};

TEST(MatmulBackward, DxMatchesReference) {
  std::mt19937 rng(5);
  test::for_each_isa([&](const std::string&) {
    for (const Case& s : kCases) {
      const std::vector<float> w = random_vec(rng, size_t(s.rows * s.cols));
      const std::vector<float> dy = random_vec(rng, size_t(s.m * s.rows));
      const std::vector<float> start = random_vec(rng, size_t(s.m * s.cols));
      for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        for (bool acc : {false, true}) {
          std::vector<float> got = acc ? start : std::vector<float>(start.size(), 12345.0f);
          std::vector<float> want = start;
          matmul_dx(w.data(), s.rows, s.cols, dy.data(), s.m, got.data(), acc, pool);
          ref::matmul_dx(w.data(), s.rows, s.cols, dy.data(), s.m, want.data(), acc);
          for (int64_t i = 0; i < s.m; ++i)
            for (int64_t c = 0; c < s.cols; ++c) {
              double mag = 0.0;
              for (int64_t r = 0; r < s.rows; ++r)
                mag += std::fabs(double(dy[size_t(i * s.rows + r)]) * w[size_t(r * s.cols + c)]);
              const size_t k = size_t(i * s.cols + c);
              ASSERT_NEAR(got[k], want[k], tol(mag, s.rows, acc ? start[k] : 0.0, want[k]))
                  << "m " << s.m << " rows " << s.rows << " cols " << s.cols << " threads "
                  << threads << " accumulate " << acc << " at token " << i << " col " << c;
            }
        }
      }
    }
  });
}

TEST(MatmulBackward, DwMatchesReference) {
  std::mt19937 rng(6);
  test::for_each_isa([&](const std::string&) {
    for (const Case& s : kCases) {
      const std::vector<float> x = random_vec(rng, size_t(s.m * s.cols));
      const std::vector<float> dy = random_vec(rng, size_t(s.m * s.rows));
      const std::vector<float> start = random_vec(rng, size_t(s.rows * s.cols), -4.0f, 4.0f);
      for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        std::vector<float> got = start, want = start;
        matmul_dw(dy.data(), x.data(), s.m, s.rows, s.cols, got.data(), pool);
        ref::matmul_dw(dy.data(), x.data(), s.m, s.rows, s.cols, want.data());
        for (int64_t r = 0; r < s.rows; ++r)
          for (int64_t c = 0; c < s.cols; ++c) {
            double mag = 0.0;
            for (int64_t i = 0; i < s.m; ++i)
              mag += std::fabs(double(dy[size_t(i * s.rows + r)]) * x[size_t(i * s.cols + c)]);
            const size_t k = size_t(r * s.cols + c);
            ASSERT_NEAR(got[k], want[k], tol(mag, s.m, start[k], want[k]))
                << "m " << s.m << " rows " << s.rows << " cols " << s.cols << " threads "
                << threads << " at row " << r << " col " << c;
          }
      }
    }
  });
}

// Two calls add up (the gradients of a step's sequences), and a zero-token call changes
// nothing.
TEST(MatmulBackward, DwAccumulatesOverCalls) {
  std::mt19937 rng(7);
  const int64_t m = 40, rows = 33, cols = 50;
  const std::vector<float> x = random_vec(rng, size_t(m * cols));
  const std::vector<float> dy = random_vec(rng, size_t(m * rows));
  ThreadPool pool(2);
  test::for_each_isa([&](const std::string&) {
    std::vector<float> got(size_t(rows * cols), 0.5f), want = got;
    matmul_dw(dy.data(), x.data(), 25, rows, cols, got.data(), pool);
    matmul_dw(dy.data() + 25 * rows, x.data() + 25 * cols, m - 25, rows, cols, got.data(), pool);
    matmul_dw(dy.data(), x.data(), 0, rows, cols, got.data(), pool);
    ref::matmul_dw(dy.data(), x.data(), m, rows, cols, want.data());
    for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], want[k], 1e-5) << k;
  });
}

// rows = 0: dx is zeros when written, unchanged when accumulated.
TEST(MatmulBackward, DxOfNoRows) {
  ThreadPool pool(2);
  test::for_each_isa([&](const std::string&) {
    std::vector<float> dx(3 * 20, 9.0f);
    matmul_dx(nullptr, 0, 20, nullptr, 3, dx.data(), true, pool);
    for (float v : dx) ASSERT_EQ(v, 9.0f);
    matmul_dx(nullptr, 0, 20, nullptr, 3, dx.data(), false, pool);
    for (float v : dx) ASSERT_EQ(v, 0.0f);
  });
}

}  // namespace
}  // namespace tandem::kernels
