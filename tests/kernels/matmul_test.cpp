// Optimized matmul against the scalar reference: every weight type of the traits table,
// odd shapes and tails, decode (m = 1) and prefill (m > 1), bias, 1-4 threads, every
// instruction set; and every kernels table has the kernels of every weight type.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem::kernels {
namespace {

using test::make_weight;
using test::random_vec;

struct Shape {
  int64_t rows, cols, m;
};

// Tolerance of one output: the f32 sums differ from the double reference by rounding
// only, which grows like eps * sqrt(cols) times the size of the terms; 8x margin.
// (A dropped or doubled term of size ~mag/cols stays above this for cols < ~10^4.)
double tolerance(const std::vector<float>& wrow, const float* x, int64_t cols) {
  double mag = 0.0;
  for (int64_t c = 0; c < cols; ++c) mag += std::fabs(double(wrow[size_t(c)]) * x[c]);
  return 8.0 * 6e-8 * std::sqrt(double(cols)) * mag + 1e-30;
}

// With 8-bit activations (test::int8_path: types with integer tiles) each x in a
// block of 32 is replaced by d*q with d = max|x of the block| / 127 and
// |x - d*q| <= d/2, so the product moves by at most sum_c |w_c| * d_block(c) / 2 (a
// worst-case bound, not a statistical one; 1% margin for the f32 rounding of d and
// 1/d), on top of the f32 rounding above.
double int8_tolerance(const std::vector<float>& wrow, const float* x, int64_t cols) {
  double t = tolerance(wrow, x, cols);
  for (int64_t b = 0; b < cols / 32; ++b) {
    double amax = 0.0, wabs = 0.0;
    for (int64_t c = b * 32; c < b * 32 + 32; ++c) {
      amax = std::max(amax, std::fabs(double(x[c])));
      wabs += std::fabs(double(wrow[size_t(c)]));
    }
    t += 1.01 * wabs * (amax / 127.0) / 2.0;
  }
  return t;
}

using test::int8_path;

void check_matmul(const test::TestWeight& tw, int64_t m, bool with_bias, ThreadPool& pool,
                  std::mt19937& rng) {
  const Weight& w = tw.w;
  const std::vector<float> x = random_vec(rng, size_t(m * w.cols));
  const std::vector<float> bias = random_vec(rng, size_t(w.rows));
  const float* b = with_bias ? bias.data() : nullptr;
  std::vector<float> got(size_t(m * w.rows), 12345.0f), want(size_t(m * w.rows));
  matmul(w, x.data(), m, got.data(), pool, b);
  ref::matmul(w, x.data(), m, want.data(), b);
  for (int64_t r = 0; r < w.rows; ++r) {
    const std::vector<float> wrow = tw.row(r);
    for (int64_t i = 0; i < m; ++i) {
      const size_t k = size_t(i * w.rows + r);
      const float* xi = x.data() + i * w.cols;
      // Plus the rounding of adding the bias and of the f32 result (a few ulp of the
      // larger of the two; the products' tolerance alone misses it where they are tiny).
      const double out_round =
          2.4e-7 * (std::fabs(double(want[k])) + (b ? std::fabs(double(b[r])) : 0.0));
      ASSERT_NEAR(got[k], want[k],
                  (int8_path(w.type) ? int8_tolerance(wrow, xi, w.cols)
                                     : tolerance(wrow, xi, w.cols)) + out_round)
          << dtype_name(w.type) << " rows " << w.rows << " cols " << w.cols << " m " << m
          << " threads " << pool.size() << " bias " << with_bias << " int8 "
          << int8_path(w.type) << " at token " << i
          << " row " << r;
    }
  }
}

const std::vector<Shape> kPlainShapes{
    {1, 1, 1},    {1, 7, 1},     {3, 17, 2},    {5, 33, 5},     {17, 64, 1},
    {64, 100, 3}, {33, 129, 9},  {128, 256, 4}, {257, 96, 13},  {100, 515, 1},
    {3, 512, 50}, {2, 300, 130}, {1, 1000, 1},  {700, 40, 1},   {9, 2049, 6}};
const std::vector<Shape> kBlockShapes{
    {1, 32, 1},    {3, 32, 2},    {5, 64, 5},    {17, 96, 1},  {33, 128, 9},
    {130, 256, 7}, {64, 1024, 1}, {257, 64, 17}, {3, 512, 50}, {2, 320, 130},
    {700, 32, 1},  {9, 2048, 6}};

// The shapes for weights of t: kPlainShapes for plain types, else kBlockShapes with
// their cols counted in blocks of t (written for blocks of 32: cols / 32 blocks of
// block_size values each, so super-blocks of 256 get the same block counts).
std::vector<Shape> shapes_for(DType t) {
  const int bs = info(t).block_size;
  if (bs == 1) return kPlainShapes;
  std::vector<Shape> v;
  for (Shape s : kBlockShapes) {
    s.cols = test::block_cols(t, s.cols);
    v.push_back(s);
  }
  return v;
}

// The weight types whose values are not grouped in blocks.
std::vector<DType> plain_weight_types() {
  std::vector<DType> v;
  for (DType t : test::all_weight_types())
    if (info(t).block_size == 1) v.push_back(t);
  return v;
}

// What each table holds for the traits table's types: a tile for every weight type
// (in every instruction set's table, whether or not this CPU runs it), entries only for
// weight types, and the optional parts consistent (an integer tile with its activation
// rows; a packed layout with its tile, only where there is an integer tile).
TEST(Matmul, EveryWeightTypeHasKernelsInEveryTable) {
  for (const detail::IsaKernels* k :
       {&detail::isa_avx512(), &detail::isa_avx2(), &detail::isa_generic()}) {
    SCOPED_TRACE(std::string("table ") + k->name);
    for (DType t : test::all_weight_types()) {
      const detail::TypeKernels* e = detail::type_kernels(*k, t);
      ASSERT_NE(e, nullptr) << dtype_name(t) << " has no tile";
      EXPECT_TRUE(!e->qtile || e->quantize_x) << dtype_name(t);
      EXPECT_EQ(e->pack != nullptr, e->packed != nullptr) << dtype_name(t);
      if (e->pack) {
        EXPECT_TRUE(e->qtile) << dtype_name(t) << ": packed tiles run with integer tiles only";
        EXPECT_NE(e->pack->layout, detail::kPackNone) << dtype_name(t);
        EXPECT_TRUE(e->pack->panel_bytes && e->pack->pack) << dtype_name(t);
      }
    }
    for (uint32_t id = 0; id < detail::kTypeSlots; ++id) {
      if (!k->types[id].tile) continue;
      const auto ti = dtype_info(id);
      EXPECT_TRUE(ti && ti->matrix) << "type id " << id << " has kernels but is no weight type";
    }
  }
}

// Runs body once with 8-bit activations (the default) and once with f32 activations.
template <typename Body>
void for_each_activation_mode(Body&& body) {
  const bool saved = detail::int8_activations();
  for (bool on : {true, false}) {
    SCOPED_TRACE(on ? "int8 activations" : "f32 activations");
    detail::set_int8_activations(on);
    body();
  }
  detail::set_int8_activations(saved);
}

TEST(Matmul, MatchesReferenceAllTypes) {
  std::vector<ThreadPool*> pools;
  ThreadPool p1(1), p2(2), p3(3), p4(4);
  for (ThreadPool* p : {&p1, &p2, &p3, &p4}) pools.push_back(p);
  for_each_activation_mode([&] {
  test::for_each_isa([&](const std::string&) {
    std::mt19937 rng(42);
    for (DType t : test::all_weight_types()) {
      int k = 0;
      const std::vector<Shape> shapes = shapes_for(t);
      ASSERT_GE(shapes.size(), 4u) << dtype_name(t);
      for (const Shape& s : shapes) {
        const test::TestWeight tw = make_weight(rng, t, s.rows, s.cols);
        for (ThreadPool* pool : pools) {
          check_matmul(tw, s.m, (k++ % 2) == 0, *pool, rng);
          if (HasFatalFailure()) return;
        }
      }
    }
  });
  });
}

// Few tokens (decode, and the last tile of a prefill), where the one-token rows kernel
// and the 2-4-token register tiles meet odd shapes: rows around the tile height, cols
// around one vector and four vectors (the unrolled loop, the one-vector loop, the
// scalar tail), tokens 1..5 (4 + 1 runs both). Plain (unblocked) types, every
// instruction set, 1
// and 3 threads; tolerance as above (f32 rounding only).
TEST(Matmul, FewTokensOddShapesPlainTypes) {
  ThreadPool p1(1), p3(3);
  test::for_each_isa([&](const std::string&) {
    std::mt19937 rng(7);
    for (DType t : plain_weight_types())
      for (int64_t rows : {1, 3, 4, 5, 17, 100})
        for (int64_t cols : {1, 15, 16, 17, 31, 33, 64, 100, 131, 768}) {
          const test::TestWeight tw = make_weight(rng, t, rows, cols);
          for (int64_t m = 1; m <= 5; ++m)
            for (ThreadPool* pool : {&p1, &p3}) {
              check_matmul(tw, m, (rows + cols + m) % 2 == 0, *pool, rng);
              if (HasFatalFailure()) return;
            }
        }
  });
}

// Tokens in lanes (F32 weights, from half a vector of tokens on): rows around the tile's
// 8, cols odd and even (the two-column loop and its tail), tokens around the group of a
// vector (a partial last group: zero lanes) up to 129; the lanes tiles on and off,
// every instruction set, 1 and 3 threads.
TEST(Matmul, LaneTilesOddShapes) {
  ThreadPool p1(1), p3(3);
  test::for_each_isa([&](const std::string&) {
    std::mt19937 rng(11);
    for (bool lanes : {true, false}) {
      detail::set_lane_tiles(lanes);
      for (int64_t rows : {1, 7, 8, 9, 17, 100})
        for (int64_t cols : {1, 2, 3, 17, 768})
          for (int64_t m : {6, 7, 8, 9, 15, 16, 17, 31, 33, 129}) {
            const test::TestWeight tw = make_weight(rng, DType::F32, rows, cols);
            for (ThreadPool* pool : {&p1, &p3}) {
              check_matmul(tw, m, (rows + cols + m) % 2 == 0, *pool, rng);
              if (HasFatalFailure()) break;
            }
            if (HasFatalFailure()) break;
          }
    }
    detail::set_lane_tiles(true);
  });
}

TEST(Matmul, DenseRowsWithoutPadding) {
  ThreadPool pool(3);
  for_each_activation_mode([&] {
  test::for_each_isa([&](const std::string&) {
    std::mt19937 rng(5);
    for (DType t : test::all_weight_types()) {
      const int64_t cols = std::lcm<int64_t>(64, info(t).block_size);
      const test::TestWeight tw = make_weight(rng, t, 37, cols, 0);
      check_matmul(tw, 11, true, pool, rng);
      check_matmul(tw, 1, false, pool, rng);
    }
  });
  });
}

// ---- weights repacked at load (kernels::pack_weight) --------------------------------

const std::vector<int64_t> kPackedRows{1, 15, 16, 17, 31, 33, 100};
const std::vector<int64_t> kPackedCols{32, 64, 96, 768};  // 96: an odd block count
const std::vector<int64_t> kPackedTokens{1, 2, 3, 5, 64, 129};

// Every instruction set and weight type with a packed layout (on AVX-512 every type
// with integer tiles), the shapes above (cols: whole blocks): body(packed weight, its TestWeight,
// tokens).
template <typename Body>
void for_each_packed_case(Body&& body) {
  int cases = 0;
  test::for_each_isa([&](const std::string&) {
    std::mt19937 rng(7);
    for (DType t : test::all_weight_types()) {
      if (!test::has_packed(t)) continue;
      for (int64_t rows : kPackedRows)
        for (int64_t cols : kPackedCols) {
          if (cols % info(t).block_size != 0) continue;
          test::TestWeight tw = make_weight(rng, t, rows, cols);
          test::PackedBuf buf;
          Weight pw = tw.w;
          if (!test::attach_packed(pw, buf)) continue;
          for (int64_t m : kPackedTokens) {
            SCOPED_TRACE(::testing::Message() << dtype_name(t) << " rows " << rows << " cols "
                                              << cols << " m " << m);
            ++cases;
            body(pw, tw, m, rng);
            if (::testing::Test::HasFatalFailure()) return;
          }
        }
    }
  });
  if (cases == 0) GTEST_SKIP() << "no instruction set with packed weights on this CPU";
}

TEST(MatmulPacked, MatchesReference) {
  ThreadPool p1(1), p2(2);
  int k = 0;
  for_each_packed_case([&](const Weight& pw, const test::TestWeight& tw, int64_t m,
                           std::mt19937& rng) {
    ThreadPool& pool = (k++ % 2) ? p2 : p1;
    const std::vector<float> x = random_vec(rng, size_t(m * pw.cols));
    const std::vector<float> bias = random_vec(rng, size_t(pw.rows));
    const float* b = (k % 3 == 0) ? bias.data() : nullptr;
    std::vector<float> got(size_t(m * pw.rows), 12345.0f), want(size_t(m * pw.rows));
    matmul(pw, x.data(), m, got.data(), pool, b);
    ref::matmul(tw.w, x.data(), m, want.data(), b);
    for (int64_t r = 0; r < pw.rows; ++r) {
      const std::vector<float> wrow = tw.row(r);
      for (int64_t i = 0; i < m; ++i) {
        const size_t j = size_t(i * pw.rows + r);
        ASSERT_NEAR(got[j], want[j], int8_tolerance(wrow, x.data() + i * pw.cols, pw.cols))
            << "token " << i << " row " << r << " threads " << pool.size();
      }
    }
  });
}

// The packed tiles against the same matmul on the original rows: equal where the
// original uses its wide tile (AVX-512, the only set with a packed layout: the same
// int32 sums and float steps), else within float summation order.
TEST(MatmulPacked, EqualsUnpacked) {
  ThreadPool pool(2);
  for_each_packed_case([&](const Weight& pw, const test::TestWeight& tw, int64_t m,
                           std::mt19937& rng) {
    const std::vector<float> x = random_vec(rng, size_t(m * pw.cols));
    const std::vector<float> bias = random_vec(rng, size_t(pw.rows));
    std::vector<float> got(size_t(m * pw.rows), 12345.0f), want(size_t(m * pw.rows), -1.0f);
    matmul(pw, x.data(), m, got.data(), pool, bias.data());
    detail::set_use_packed(false);
    matmul(pw, x.data(), m, want.data(), pool, bias.data());
    detail::set_use_packed(true);
    // Tokens go to the tiles in calls of up to qtile_tokens (from token 0); the original
    // rows use the wide tile in calls of 8 tokens or more.
    const int64_t tt = detail::isa().qtile_tokens;
    for (int64_t r = 0; r < pw.rows; ++r) {
      const std::vector<float> wrow = tw.row(r);
      for (int64_t i = 0; i < m; ++i) {
        const size_t j = size_t(i * pw.rows + r);
        if (std::min(tt, m - i / tt * tt) >= 8)
          ASSERT_EQ(got[j], want[j]) << "token " << i << " row " << r;
        else
          ASSERT_NEAR(got[j], want[j], 2.0 * tolerance(wrow, x.data() + i * pw.cols, pw.cols) +
                                           1e-6 * std::fabs(bias[size_t(r)]))
              << "token " << i << " row " << r;
      }
    }
  });
}

// A packed weight seen by kernels of another layout (here: f32 activations, or any
// instruction set without one) is read from its original rows.
TEST(MatmulPacked, IgnoredWithoutIntegerPath) {
  ThreadPool pool(2);
  std::mt19937 rng(3);
  int cases = 0;
  for (DType t : test::all_weight_types()) {
    if (!test::has_packed(t)) continue;
    const int64_t cols = std::lcm<int64_t>(96, info(t).block_size);
    test::TestWeight tw = make_weight(rng, t, 33, cols);
    test::PackedBuf buf;
    Weight pw = tw.w;
    if (!test::attach_packed(pw, buf)) continue;
    SCOPED_TRACE(dtype_name(t));
    ++cases;
    std::memset(buf.get(), 0x5A, packed_size(pw));  // garbage: must not be read
    detail::set_int8_activations(false);
    const std::vector<float> x = random_vec(rng, size_t(3 * pw.cols));
    std::vector<float> got(size_t(3 * pw.rows)), want(got.size());
    matmul(pw, x.data(), 3, got.data(), pool);
    matmul(tw.w, x.data(), 3, want.data(), pool);
    detail::set_int8_activations(true);
    EXPECT_EQ(got, want);
  }
  if (cases == 0) GTEST_SKIP() << "no packed layout in use";
}

TEST(Matmul, ZeroTokensWritesNothing) {
  ThreadPool pool(2);
  std::mt19937 rng(1);
  const test::TestWeight tw = make_weight(rng, DType::F32, 4, 8);
  float y = 7.0f;
  matmul(tw.w, nullptr, 0, &y, pool);
  EXPECT_EQ(y, 7.0f);
}

TEST(Matmul, KnownSmallProduct) {
  // W = [[1, 2, 3], [-1, 0, 0.5]], x = [[1, 1, 1], [2, 0, -2]]
  const std::vector<float> wv{1, 2, 3, -1, 0, 0.5f};
  Weight w{DType::F32, 2, 3, wv.data(), 12};
  const std::vector<float> x{1, 1, 1, 2, 0, -2}, bias{10, 20};
  std::vector<float> y(4);
  ThreadPool pool(2);
  matmul(w, x.data(), 2, y.data(), pool, bias.data());
  EXPECT_EQ(y, (std::vector<float>{16, 19.5f, 6, 17}));
}

}  // namespace
}  // namespace tandem::kernels
