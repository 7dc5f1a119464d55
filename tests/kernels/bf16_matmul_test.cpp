// BF16 products (bf16_matmul.hpp):
//  - the rounding f32 -> BF16 (to nearest even, subnormals to zero, NaN, infinities);
//  - bf16_matmul, bf16_matmul_dx and bf16_matmul_dw against the scalar references
//    (inputs rounded to BF16, sums in double) on every path this CPU has: AVX-512 BF16
//    (the kernels in use avx512 on a CPU with the instructions) and the portable path
//    (avx2, generic), 1-3 threads, odd shapes (m = 1, m below a register tile, rows and
//    cols not multiples of a tile or a vector, odd depths, depths past one pass, token and
//    row counts past one block), dx written and accumulated, dw accumulated;
//  - the packed matrix: its path, size and storage kept over repacks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernel_test_util.hpp"
#include "tandem/kernels/bf16_matmul.hpp"

namespace tandem::kernels {
namespace {

using test::random_vec;

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(Bf16Round, NearestEvenAndSpecialValues) {
  EXPECT_EQ(bf16_from_float(1.0f), 0x3F80);
  EXPECT_EQ(bf16_from_float(-2.0f), 0xC000);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to the even one, 1.
  EXPECT_EQ(bf16_round(1.0f + 0x1p-8f), 1.0f);
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  EXPECT_EQ(bf16_round(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);
  // Past halfway rounds up, below it down.
  EXPECT_EQ(bf16_round(from_bits(0x3F808001u)), from_bits(0x3F810000u));
  EXPECT_EQ(bf16_round(from_bits(0x3F807FFFu)), 1.0f);
  EXPECT_EQ(bf16_round(-from_bits(0x3F80C000u)), -from_bits(0x3F810000u));
  // Subnormals become zero of their sign (as VCVTNEPS2BF16); the smallest normal stays.
  EXPECT_EQ(bf16_from_float(from_bits(0x00400000u)), 0x0000);
  EXPECT_EQ(bf16_from_float(from_bits(0x80000001u)), 0x8000);
  EXPECT_EQ(bf16_from_float(std::numeric_limits<float>::min()), 0x0080);
  // Infinities stay; the largest float rounds to infinity; NaN stays NaN.
  EXPECT_EQ(bf16_from_float(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(bf16_from_float(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(bf16_from_float(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_TRUE(std::isnan(bf16_round(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(bf16_round(from_bits(0x7F800001u))));  // low-payload signalling NaN
  // Every BF16 value converts back exactly.
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const float f = bf16_to_float(uint16_t(b));
    if (std::isnan(f) || (b & 0x7F80u) == 0) continue;
    ASSERT_EQ(bf16_from_float(f), b) << b;
  }
  EXPECT_EQ(bits(bf16_to_float(0x3F80)), 0x3F800000u);
}

// Each path this CPU has, once: "avx512" on a CPU with AVX-512 BF16 is the fast path;
// avx2 and generic (and avx512 without the instructions) the portable one.
template <typename Body>
void for_each_path(Body&& body) {
  test::for_each_isa([&](const std::string& isa) {
    SCOPED_TRACE(bf16_products_fast() ? "fast path (AVX-512 BF16)" : "portable path");
    body(isa);
  });
}

// f32 sums of K exact products against the double reference (the rounding of the inputs
// is the reference's too, so only the sums differ): as matmul_backward_test, eps * sqrt(K)
// times the sum of the terms' sizes with an 8x margin, the start value included, plus 4
// ulp of the result. A product of one unrounded input (1 BF16 ulp, 2^-9 relative, in
// every term) is far above it.
double tol(double mag, int64_t K, double start, double want) {
  return 8.0 * 6e-8 * std::sqrt(double(K) + 1.0) * (mag + std::fabs(start)) +
         2.4e-7 * std::fabs(want) + 1e-30;
}

struct Case {
  int64_t m, rows, cols;
};
// AVX-512 BF16 tile: 8 rows x 48 columns, pairs of depth steps, passes of at most 512
// pairs, A blocks of 256 KiB (rows = 64 Ki / pairs of the pass: 232 at 1100 values, 240
// at 530, 216 at 600). Depths past one pass: forward 1100 cols, dx 1100 rows, dw 1100
// tokens; blocks past one: forward 400 tokens at 1100 cols, dx 600 tokens at 530 rows, dw
// 530 rows at 600 tokens.
const Case kCases[] = {{1, 1, 1},      {1, 17, 33},     {3, 5, 7},      {2, 64, 48},
                       {7, 48, 96},    {13, 31, 47},    {9, 49, 97},    {29, 30, 16},
                       {37, 70, 100},  {8, 16, 1},      {1, 300, 40},   {5, 600, 97},
                       {300, 29, 21},  {260, 240, 290}, {530, 300, 20}, {17, 8, 1100},
                       {400, 40, 1100}, {9, 1100, 40},  {1100, 20, 50}, {600, 530, 24}};

// Sum of |a| * |b| over the depth, on rounded values: the scale of one output's terms.
double mag_of(const float* a, int64_t sa, const float* b, int64_t sb, int64_t K) {
  double s = 0.0;
  for (int64_t k = 0; k < K; ++k)
    s += std::fabs(double(bf16_round(a[k * sa])) * double(bf16_round(b[k * sb])));
  return s;
}

TEST(Bf16Matmul, ForwardMatchesReference) {
  std::mt19937 rng(21);
  for_each_path([&](const std::string&) {
    for (const Case& s : kCases) {
      const std::vector<float> w = random_vec(rng, size_t(s.rows * s.cols));
      const std::vector<float> x = random_vec(rng, size_t(s.m * s.cols));
      std::vector<float> want(size_t(s.m * s.rows));
      ref::bf16_matmul(w.data(), s.rows, s.cols, x.data(), s.m, want.data());
      std::vector<double> mag(want.size());
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t r = 0; r < s.rows; ++r)
          mag[size_t(i * s.rows + r)] =
              mag_of(x.data() + i * s.cols, 1, w.data() + r * s.cols, 1, s.cols);
      for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        Bf16Matrix wb;
        wb.pack(w.data(), s.rows, s.cols, pool);
        std::vector<float> got(want.size(), 12345.0f);
        bf16_matmul(wb, x.data(), s.m, got.data(), pool);
        for (int64_t i = 0; i < s.m; ++i)
          for (int64_t r = 0; r < s.rows; ++r) {
            const size_t k = size_t(i * s.rows + r);
            ASSERT_NEAR(got[k], want[k], tol(mag[k], s.cols, 0.0, want[k]))
                << "m " << s.m << " rows " << s.rows << " cols " << s.cols << " threads "
                << threads << " at token " << i << " row " << r;
          }
      }
    }
  });
}

TEST(Bf16Matmul, DxMatchesReference) {
  std::mt19937 rng(22);
  for_each_path([&](const std::string&) {
    for (const Case& s : kCases) {
      const std::vector<float> w = random_vec(rng, size_t(s.rows * s.cols));
      const std::vector<float> dy = random_vec(rng, size_t(s.m * s.rows));
      const std::vector<float> start = random_vec(rng, size_t(s.m * s.cols));
      std::vector<double> mag(start.size());
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t c = 0; c < s.cols; ++c)
          mag[size_t(i * s.cols + c)] = mag_of(dy.data() + i * s.rows, 1, w.data() + c, s.cols, s.rows);
      for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        Bf16Matrix wb;
        wb.pack(w.data(), s.rows, s.cols, pool);
        for (bool acc : {false, true}) {
          std::vector<float> got = acc ? start : std::vector<float>(start.size(), 12345.0f);
          std::vector<float> want = start;
          bf16_matmul_dx(wb, dy.data(), s.m, got.data(), acc, pool);
          ref::bf16_matmul_dx(w.data(), s.rows, s.cols, dy.data(), s.m, want.data(), acc);
          for (int64_t i = 0; i < s.m; ++i)
            for (int64_t c = 0; c < s.cols; ++c) {
              const size_t k = size_t(i * s.cols + c);
              ASSERT_NEAR(got[k], want[k], tol(mag[k], s.rows, acc ? start[k] : 0.0, want[k]))
                  << "m " << s.m << " rows " << s.rows << " cols " << s.cols << " threads "
                  << threads << " accumulate " << acc << " at token " << i << " col " << c;
            }
        }
      }
    }
  });
}

TEST(Bf16Matmul, DwMatchesReference) {
  std::mt19937 rng(23);
  for_each_path([&](const std::string&) {
    for (const Case& s : kCases) {
      const std::vector<float> x = random_vec(rng, size_t(s.m * s.cols));
      const std::vector<float> dy = random_vec(rng, size_t(s.m * s.rows));
      const std::vector<float> start = random_vec(rng, size_t(s.rows * s.cols), -4.0f, 4.0f);
      std::vector<float> want = start;
      ref::bf16_matmul_dw(dy.data(), x.data(), s.m, s.rows, s.cols, want.data());
      std::vector<double> mag(want.size());
      for (int64_t r = 0; r < s.rows; ++r)
        for (int64_t c = 0; c < s.cols; ++c)
          mag[size_t(r * s.cols + c)] = mag_of(dy.data() + r, s.rows, x.data() + c, s.cols, s.m);
      for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        std::vector<float> got = start;
        bf16_matmul_dw(dy.data(), x.data(), s.m, s.rows, s.cols, got.data(), pool);
        for (int64_t r = 0; r < s.rows; ++r)
          for (int64_t c = 0; c < s.cols; ++c) {
            const size_t k = size_t(r * s.cols + c);
            ASSERT_NEAR(got[k], want[k], tol(mag[k], s.m, start[k], want[k]))
                << "m " << s.m << " rows " << s.rows << " cols " << s.cols << " threads "
                << threads << " at row " << r << " col " << c;
          }
      }
    }
  });
}

// The rounding is the products' own: inputs already BF16 give the f32 products of the
// same values exactly where every partial sum is exact (small integers).
TEST(Bf16Matmul, ExactOnSmallIntegers) {
  std::mt19937 rng(24);
  std::uniform_int_distribution<int> d(-8, 8);
  const int64_t m = 11, rows = 50, cols = 70;
  std::vector<float> w(size_t(rows * cols)), x(size_t(m * cols)), dy(size_t(m * rows));
  for (auto* v : {&w, &x, &dy})
    for (float& f : *v) f = float(d(rng));
  ThreadPool pool(2);
  for_each_path([&](const std::string&) {
    Bf16Matrix wb;
    wb.pack(w.data(), rows, cols, pool);
    std::vector<float> y(size_t(m * rows)), dx(size_t(m * cols)), dw(size_t(rows * cols), 1.0f);
    bf16_matmul(wb, x.data(), m, y.data(), pool);
    bf16_matmul_dx(wb, dy.data(), m, dx.data(), false, pool);
    bf16_matmul_dw(dy.data(), x.data(), m, rows, cols, dw.data(), pool);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t r = 0; r < rows; ++r) {
        float s = 0.0f;
        for (int64_t c = 0; c < cols; ++c) s += x[size_t(i * cols + c)] * w[size_t(r * cols + c)];
        ASSERT_EQ(y[size_t(i * rows + r)], s);
      }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t c = 0; c < cols; ++c) {
        float s = 0.0f;
        for (int64_t r = 0; r < rows; ++r) s += dy[size_t(i * rows + r)] * w[size_t(r * cols + c)];
        ASSERT_EQ(dx[size_t(i * cols + c)], s);
      }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        float s = 1.0f;
        for (int64_t i = 0; i < m; ++i) s += dy[size_t(i * rows + r)] * x[size_t(i * cols + c)];
        ASSERT_EQ(dw[size_t(r * cols + c)], s);
      }
  });
}

// A matrix packed on one path is read on that path whatever is in use later; a repack of
// the same shape on the same path keeps its storage; a zero-token call writes nothing.
TEST(Bf16Matmul, PackedMatrixKeepsItsPath) {
  std::mt19937 rng(25);
  const int64_t m = 9, rows = 40, cols = 60;
  const std::vector<float> w = random_vec(rng, size_t(rows * cols));
  const std::vector<float> x = random_vec(rng, size_t(m * cols));
  std::vector<float> want(size_t(m * rows));
  ref::bf16_matmul(w.data(), rows, cols, x.data(), m, want.data());
  ThreadPool pool(2);
  for_each_path([&](const std::string&) {
    Bf16Matrix wb;
    wb.pack(w.data(), rows, cols, pool);
    EXPECT_EQ(wb.fast(), bf16_products_fast());
    EXPECT_EQ(wb.bytes(), Bf16Matrix::bytes_of(rows, cols, wb.fast()));
    const void* storage = wb.data();
    wb.pack(w.data(), rows, cols, pool);
    EXPECT_EQ(wb.data(), storage);
    test::for_each_isa([&](const std::string&) {  // whichever kernels are in use now
      std::vector<float> got(want.size(), 5.0f);
      bf16_matmul(wb, x.data(), m, got.data(), pool);
      for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], want[k], 1e-5) << k;
      bf16_matmul(wb, x.data(), 0, got.data(), pool);
      for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], want[k], 1e-5) << k;
    });
  });
  // The fast layout holds each matrix twice in BF16 (panels padded to 48 columns and to
  // even depths): as many bytes as the f32 matrix where the shape is a multiple of 48 x 2.
  EXPECT_EQ(Bf16Matrix::bytes_of(96, 768, true), size_t(96 * 768 * 4));
  EXPECT_EQ(Bf16Matrix::bytes_of(96, 768, false), size_t(96 * 768 * 4));
}

// Where the CPU has AVX-512 BF16, "avx512" takes the fast path and the other sets do not.
TEST(Bf16Matmul, PathFollowsTheKernelsInUse) {
  const std::string saved = detail::isa().name;
  for (const char* name : {"avx512", "avx2", "generic"}) {
    if (!detail::force_isa(name)) continue;
    EXPECT_EQ(bf16_products_fast(), cpu_has_avx512_bf16() && std::string(name) == "avx512")
        << name;
  }
  detail::force_isa(saved);
}

}  // namespace
}  // namespace tandem::kernels
