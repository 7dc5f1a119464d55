// Row conversions: F16/BF16 scalar conversions (exhaustive round trips, round to
// nearest even), the Q8_0/Q4_0 block rules of quant.hpp, and (every type of the traits
// table with row conversions) the kernels API forwarding to the table's entry.
#include "tandem/kernels/quant.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "tandem/core/fp16.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tandem::kernels {
namespace {

bool is_half_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool is_bf16_nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0; }

// The exact value of an IEEE half, from its definition.
double half_value(uint16_t h) {
  const int e = (h >> 10) & 31, man = h & 1023;
  const double mag = e == 0 ? std::ldexp(man, -24) : std::ldexp(1024 + man, e - 25);
  return (h & 0x8000) ? -mag : mag;
}

TEST(Fp16, AllHalfValuesRoundTrip) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = uint16_t(i);
    const float f = fp16_to_f32(h);
    if (is_half_nan(h)) {
      EXPECT_TRUE(std::isnan(f)) << i;
      continue;
    }
    if (((h >> 10) & 31) == 31)
      ASSERT_TRUE(std::isinf(f)) << i;
    else
      ASSERT_EQ(double(f), half_value(h)) << i;
    ASSERT_EQ(f32_to_fp16(f), h) << i;
  }
}

TEST(Fp16, AllBf16ValuesRoundTrip) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto b = uint16_t(i);
    const float f = bf16_to_f32(b);
    if (is_bf16_nan(b)) {
      EXPECT_TRUE(std::isnan(f)) << i;
      continue;
    }
    ASSERT_EQ(f32_bits(f), uint32_t(b) << 16) << i;
    ASSERT_EQ(f32_to_bf16(f), b) << i;
  }
}

TEST(Fp16, HalfRoundsToNearestEven) {
  // ulp of half at 1 is 2^-10; halfway cases go to the even mantissa
  EXPECT_EQ(f32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // -> 1.0
  EXPECT_EQ(f32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // -> 1 + 2^-9
  EXPECT_EQ(f32_to_fp16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(f32_to_fp16(-(1.0f + std::ldexp(1.0f, -11))), 0xbc00);
  // subnormals: the smallest is 2^-24
  EXPECT_EQ(f32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);      // halfway to 0 -> 0
  EXPECT_EQ(f32_to_fp16(3 * std::ldexp(1.0f, -25)), 0x0002);  // 1.5 ulp -> 2
  EXPECT_EQ(f32_to_fp16(std::ldexp(1.0f, -25) * 1.0001f), 0x0001);
  // largest half is 65504; 65520 is halfway to 65536 and rounds (even) to inf
  EXPECT_EQ(f32_to_fp16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_fp16(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_fp16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_TRUE(is_half_nan(f32_to_fp16(std::numeric_limits<float>::quiet_NaN())));
}

TEST(Fp16, Bf16RoundsToNearestEven) {
  // bf16 keeps 7 mantissa bits: ulp at 1 is 2^-7
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_TRUE(is_bf16_nan(f32_to_bf16(std::numeric_limits<float>::quiet_NaN())));
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t hw_to_half(float f) {
  return uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
TEST(Fp16, MatchesHardwareConversion) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C";
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    const float f = f32_from_bits(uint32_t(rng()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_fp16(f), hw_to_half(f)) << std::hexfloat << f;
  }
}
#endif

TEST(QuantRow, F16AndBf16RowsUseTheScalarRules) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 100.0f);
  std::vector<float> x(333);
  for (auto& v : x) v = nd(rng);
  for (DType t : {DType::F16, DType::BF16}) {
    std::vector<uint16_t> enc(x.size());
    quantize_row(t, x.data(), enc.data(), int64_t(x.size()));
    std::vector<float> back(x.size());
    dequantize_row(t, enc.data(), back.data(), int64_t(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      const uint16_t want = t == DType::F16 ? f32_to_fp16(x[i]) : f32_to_bf16(x[i]);
      ASSERT_EQ(enc[i], want);
      ASSERT_EQ(back[i], t == DType::F16 ? fp16_to_f32(want) : bf16_to_f32(want));
    }
  }
}

TEST(QuantRow, F32IsACopy) {
  std::vector<float> x{1.5f, -2.25f, 3e-30f}, enc(3), back(3);
  quantize_row(DType::F32, x.data(), enc.data(), 3);
  dequantize_row(DType::F32, enc.data(), back.data(), 3);
  EXPECT_EQ(back, x);
}

TEST(QuantRow, Q8_0HandWrittenBlock) {
  BlockQ8_0 blk{};
  blk.d = 0x3800;  // 0.5
  for (int j = 0; j < 32; ++j) blk.qs[j] = int8_t(j * 8 - 128);  // -128, -120, ... 120
  std::vector<float> out(32);
  dequantize_row(DType::Q8_0, &blk, out.data(), 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], 0.5f * float(j * 8 - 128)) << j;
}

TEST(QuantRow, Q4_0HandWrittenBlock) {
  BlockQ4_0 blk{};
  blk.d = 0xc000;  // -2.0
  for (int j = 0; j < 16; ++j) blk.qs[j] = uint8_t(j | ((15 - j) << 4));
  std::vector<float> out(32);
  dequantize_row(DType::Q4_0, &blk, out.data(), 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], -2.0f * float(j - 8)) << j;             // low nibbles first
    EXPECT_EQ(out[j + 16], -2.0f * float(7 - j)) << j + 16;   // then high nibbles
  }
}

TEST(QuantRow, Q8_0KnownEncoding) {
  // amax 127 -> d = 1, q = roundf(x): halves round away from zero
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = -127.0f;
  x[2] = 63.5f;
  x[3] = -63.5f;
  x[4] = 0.49f;
  x[5] = -2.5f;
  BlockQ8_0 blk;
  quantize_row(DType::Q8_0, x.data(), &blk, 32);
  EXPECT_EQ(blk.d, 0x3c00);
  EXPECT_EQ(blk.qs[0], 127);
  EXPECT_EQ(blk.qs[1], -127);
  EXPECT_EQ(blk.qs[2], 64);
  EXPECT_EQ(blk.qs[3], -64);
  EXPECT_EQ(blk.qs[4], 0);
  EXPECT_EQ(blk.qs[5], -3);
  for (int j = 6; j < 32; ++j) EXPECT_EQ(blk.qs[j], 0);
}

TEST(QuantRow, Q4_0KnownEncoding) {
  // x[j] = j - 8 and x[16 + j] = 7 - j: the largest magnitude is -8 (first), so
  // d = -8 / -8 = 1 and q = trunc(x + 8.5), capped at 15
  std::vector<float> x(32);
  for (int j = 0; j < 16; ++j) {
    x[j] = float(j - 8);
    x[16 + j] = float(7 - j);
  }
  BlockQ4_0 blk;
  quantize_row(DType::Q4_0, x.data(), &blk, 32);
  EXPECT_EQ(blk.d, 0x3c00);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(blk.qs[j], uint8_t(j | ((15 - j) << 4))) << j;

  // A positive extreme: m = 8 -> d = -1; x = 8 -> 8*-1 + 8.5 = 0.5 -> 0; x = -8 -> 16 -> 15
  std::vector<float> y(32, 0.0f);
  y[0] = 8.0f;
  y[1] = -8.0f;  // same magnitude, later: m stays 8
  y[2] = 1.0f;   // -1 + 8.5 -> 7
  BlockQ4_0 b2;
  quantize_row(DType::Q4_0, y.data(), &b2, 32);
  EXPECT_EQ(b2.d, 0xbc00);
  EXPECT_EQ(b2.qs[0] & 15, 0);
  EXPECT_EQ(b2.qs[1] & 15, 15);
  EXPECT_EQ(b2.qs[2] & 15, 7);
  EXPECT_EQ(b2.qs[3] & 15, 8);  // zero -> 8
}

TEST(QuantRow, ZeroBlocks) {
  std::vector<float> x(64, 0.0f), out(64, 1.0f);
  BlockQ8_0 q8[2];
  quantize_row(DType::Q8_0, x.data(), q8, 64);
  for (const auto& b : q8) {
    EXPECT_EQ(b.d, 0x0000);
    for (int8_t q : b.qs) EXPECT_EQ(q, 0);
  }
  dequantize_row(DType::Q8_0, q8, out.data(), 64);
  for (float v : out) EXPECT_EQ(v, 0.0f);

  BlockQ4_0 q4[2];
  quantize_row(DType::Q4_0, x.data(), q4, 64);
  for (const auto& b : q4) {
    EXPECT_EQ(b.d, 0x8000);  // 0 / -8 is -0
    for (uint8_t q : b.qs) EXPECT_EQ(q, 0x88);
  }
  std::fill(out.begin(), out.end(), 1.0f);
  dequantize_row(DType::Q4_0, q4, out.data(), 64);
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

// Quantize then dequantize random rows: per block, q*d is within half a step of x
// (Q8_0) or one step (Q4_0, whose top code is capped). The step is d rounded to F16,
// while q was chosen with the f32 d, which adds |q| * |d - d16| at most.
void check_round_trip(DType t, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  const int nb = 40;
  std::vector<float> x(size_t(nb) * 32);
  for (auto& v : x) v = u(rng);
  x[5] = 0.0f;
  for (int j = 64; j < 96; ++j) x[size_t(j)] = 0.0f;  // an all-zero block
  std::vector<uint8_t> enc(row_bytes(t, int64_t(x.size())));
  quantize_row(t, x.data(), enc.data(), int64_t(x.size()));
  std::vector<float> back(x.size());
  dequantize_row(t, enc.data(), back.data(), int64_t(x.size()));
  for (int b = 0; b < nb; ++b) {
    float amax = 0.0f, m = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float v = x[size_t(b * 32 + j)];
      if (std::fabs(v) > amax) {
        amax = std::fabs(v);
        m = v;
      }
    }
    const double d32 = t == DType::Q8_0 ? amax / 127.0 : std::fabs(m) / 8.0;
    const double d16 = std::fabs(half_value(f32_to_fp16(float(d32))));
    const double bound = t == DType::Q8_0 ? d16 / 2 + 128 * std::fabs(d16 - d32)
                                          : d16 + 9 * std::fabs(d16 - d32);
    for (int j = 0; j < 32; ++j) {
      const size_t i = size_t(b * 32 + j);
      ASSERT_LE(std::fabs(double(back[i]) - x[i]), bound * (1 + 1e-4) + 1e-30)
          << "block " << b << " j " << j;
    }
  }
}

TEST(QuantRow, Q8_0RoundTripError) {
  for (float scale : {1e-3f, 1.0f, 37.0f, 1000.0f}) check_round_trip(DType::Q8_0, scale, 11);
}

TEST(QuantRow, Q4_0RoundTripError) {
  for (float scale : {1e-3f, 1.0f, 37.0f, 1000.0f}) check_round_trip(DType::Q4_0, scale, 12);
}

// The types of the traits table with row conversions.
std::vector<DType> row_types() {
  std::vector<DType> v;
  for (const DTypeInfo& i : dtype_table())
    if (i.to_f32) v.push_back(i.type);
  return v;
}

TEST(QuantRow, BlocksOfARowAreIndependent) {
  // quantizing a row equals quantizing its parts (whole blocks, 32 values or more) one
  // by one, for every type of the table
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-5.0f, 5.0f);
  for (DType t : row_types()) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t part = std::lcm<int64_t>(32, info(t).block_size);
    std::vector<float> x(size_t(part) * 7);
    for (auto& v : x) v = u(rng);
    const size_t bb = row_bytes(t, part);
    std::vector<uint8_t> whole(row_bytes(t, int64_t(x.size()))), one(bb);
    quantize_row(t, x.data(), whole.data(), int64_t(x.size()));
    for (int b = 0; b < 7; ++b) {
      quantize_row(t, x.data() + b * part, one.data(), part);
      EXPECT_EQ(0, std::memcmp(one.data(), whole.data() + size_t(b) * bb, bb)) << b;
    }
  }
}

TEST(QuantRow, KernelsForwardToTheTraitsTable) {
  // the kernels API gives exactly what the type's entry does, both ways
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  for (DType t : row_types()) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t n = 3 * std::lcm<int64_t>(32, info(t).block_size);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = u(rng);
    std::vector<uint8_t> got(row_bytes(t, n), 0x11), want(got.size(), 0x22);
    quantize_row(t, x.data(), got.data(), n);
    info(t).from_f32(x.data(), want.data(), n);
    EXPECT_EQ(got, want);
    std::vector<float> back(size_t(n), 1.0f), back_want(size_t(n), 2.0f);
    dequantize_row(t, got.data(), back.data(), n);
    info(t).to_f32(got.data(), back_want.data(), n);
    EXPECT_EQ(0, std::memcmp(back.data(), back_want.data(), back.size() * sizeof(float)));
  }
}

}  // namespace
}  // namespace tandem::kernels
