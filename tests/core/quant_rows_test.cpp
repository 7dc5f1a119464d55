// Row conversions (core/quant_rows) and the scalar F16/BF16 rounding of core/fp16; the
// traits table (core/dtype), every entry.
#include "tandem/core/quant_rows.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/core/fp16.hpp"

using namespace tandem;

namespace {

// Independent reference: round x to the nearest half (ties to even) with double math.
uint16_t ref_f32_to_fp16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (std::isnan(f)) return uint16_t(sign | 0x7e00);
  const double a = std::fabs(double(f));
  if (a >= 65520.0) return uint16_t(sign | 0x7c00);  // halfway to 2^16 and above: inf
  int e = 0;
  std::frexp(a, &e);                       // a = m * 2^e, m in [0.5, 1)
  const int q_exp = std::max(e - 1, -14);  // exponent of the half's leading bit
  const double quantum = std::ldexp(1.0, q_exp - 10);
  const double q = std::nearbyint(a / quantum);  // default mode: ties to even
  const double r = q * quantum;
  if (r == 0.0) return sign;
  if (r < std::ldexp(1.0, -14)) return uint16_t(sign | uint16_t(q));  // subnormal
  int re = 0;
  const double rm = std::frexp(r, &re);
  const uint32_t biased = uint32_t(re - 1 + 15);
  const uint32_t man = uint32_t(std::ldexp(rm * 2.0 - 1.0, 10));
  return uint16_t(sign | (biased << 10) | man);
}

uint16_t ref_f32_to_bf16(float f) {
  if (std::isnan(f)) return uint16_t((f32_bits(f) >> 16) | 0x40);
  const uint32_t x = f32_bits(f);
  const uint32_t hi = x >> 16, lo = x & 0xffff;
  if (lo > 0x8000 || (lo == 0x8000 && (hi & 1))) return uint16_t(hi + 1);
  return uint16_t(hi);
}

float next_up(float f) { return std::nextafter(f, std::numeric_limits<float>::infinity()); }
float next_down(float f) { return std::nextafter(f, -std::numeric_limits<float>::infinity()); }

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> out(row_bytes(t, int64_t(x.size())));
  quantize_row(t, x.data(), out.data(), int64_t(x.size()));
  return out;
}

}  // namespace

TEST(Fp16, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_f32(uint16_t(h));
    const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 31 && man != 0) {
      EXPECT_TRUE(std::isnan(f));
      EXPECT_EQ(f32_to_fp16(f) & 0x7e00, 0x7e00) << h;  // stays a (quiet) NaN
      continue;
    }
    ASSERT_EQ(f32_to_fp16(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(Fp16, DecodesKnownValues) {
  EXPECT_EQ(fp16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(fp16_to_f32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_TRUE(std::signbit(fp16_to_f32(0x8000)));
  EXPECT_EQ(fp16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
}

// Every midpoint between neighbouring halves (ties), and the floats either side of it.
TEST(Fp16, RoundsTiesToEvenIncludingSubnormalsAndOverflow) {
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const double lo = fp16_to_f32(uint16_t(h));
    const double hi = h + 1 == 0x7c00 ? 65536.0 : double(fp16_to_f32(uint16_t(h + 1)));
    const float mid = float((lo + hi) / 2);  // exact in f32
    ASSERT_EQ(double(mid), (lo + hi) / 2);
    for (const float f : {mid, next_up(mid), next_down(mid)}) {
      ASSERT_EQ(f32_to_fp16(f), ref_f32_to_fp16(f)) << "value " << f;
      ASSERT_EQ(f32_to_fp16(-f), ref_f32_to_fp16(-f)) << "value " << -f;
    }
    const uint16_t even = (h & 1) ? uint16_t(h + 1) : uint16_t(h);
    ASSERT_EQ(f32_to_fp16(mid), even) << "tie at " << mid;
  }
  EXPECT_EQ(f32_to_fp16(65519.996f), 0x7bff);
  EXPECT_EQ(f32_to_fp16(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_fp16(1e10f), 0x7c00);
  EXPECT_EQ(f32_to_fp16(-1e10f), 0xfc00);
  EXPECT_EQ(f32_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(f32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);                // tie to 0
  EXPECT_EQ(f32_to_fp16(next_up(std::ldexp(1.0f, -25))), 0x0001);
  EXPECT_EQ(f32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);                // 1.5 ulp -> 2
  EXPECT_EQ(f32_to_fp16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(f32_to_fp16(-0.0f), 0x8000);
}

TEST(Fp16, MatchesReferenceOnRandomFloats) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2'000'000; ++i) {
    const float f = f32_from_bits(uint32_t(rng()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_fp16(f), ref_f32_to_fp16(f)) << "bits 0x" << std::hex << f32_bits(f);
  }
}

TEST(Bf16, RoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), h);
  }
  std::mt19937 rng(11);
  for (int i = 0; i < 2'000'000; ++i) {
    const float f = f32_from_bits(uint32_t(rng()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), ref_f32_to_bf16(f)) << "bits 0x" << std::hex << f32_bits(f);
  }
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
}

TEST(QuantRows, F32F16Bf16Rows) {
  const std::vector<float> x = {1.0f, -2.5f, 0.1f, 65504.0f, 1e-8f, -0.0f};
  const auto f32 = quantize(DType::F32, x);
  EXPECT_EQ(std::memcmp(f32.data(), x.data(), f32.size()), 0);
  const auto f16 = quantize(DType::F16, x);
  const auto bf = quantize(DType::BF16, x);
  std::vector<float> back(x.size());
  dequantize_row(DType::F16, f16.data(), back.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, f16.data() + 2 * i, 2);
    EXPECT_EQ(h, f32_to_fp16(x[i]));
    EXPECT_EQ(back[i], fp16_to_f32(h));
  }
  dequantize_row(DType::BF16, bf.data(), back.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(back[i], bf16_to_f32(f32_to_bf16(x[i])));
}

TEST(QuantRows, Q8_0HandComputed) {
  std::vector<float> x(64, 0.0f);
  // block 0: amax 127 -> d = 1, id = 1, q = roundf(x) (halves away from zero)
  const float b0[8] = {-127.0f, 0.5f, 1.5f, 2.5f, -0.5f, 126.4f, -3.49f, 0.0f};
  const int8_t q0[8] = {-127, 1, 2, 3, -1, 126, -3, 0};
  // block 1: amax 254 -> d = 2, id = 0.5
  const float b1[6] = {3.0f, -5.0f, 254.0f, -1.0f, 0.9f, 100.0f};
  const int8_t q1[6] = {2, -3, 127, -1, 0, 50};
  std::memcpy(x.data(), b0, sizeof b0);
  std::memcpy(x.data() + 32, b1, sizeof b1);
  const auto out = quantize(DType::Q8_0, x);
  ASSERT_EQ(out.size(), 2 * sizeof(BlockQ8_0));
  BlockQ8_0 blk[2];
  std::memcpy(blk, out.data(), sizeof blk);
  EXPECT_EQ(blk[0].d, 0x3c00);  // 1.0
  EXPECT_EQ(blk[1].d, 0x4000);  // 2.0
  for (int j = 0; j < 8; ++j) EXPECT_EQ(blk[0].qs[j], q0[j]) << j;
  for (int j = 0; j < 6; ++j) EXPECT_EQ(blk[1].qs[j], q1[j]) << j;
  for (int j = 8; j < 32; ++j) EXPECT_EQ(blk[0].qs[j], 0);
  std::vector<float> back(64);
  dequantize_row(DType::Q8_0, out.data(), back.data(), 64);
  for (int j = 0; j < 8; ++j) EXPECT_EQ(back[size_t(j)], float(q0[j]));
  for (int j = 0; j < 6; ++j) EXPECT_EQ(back[size_t(32 + j)], 2.0f * float(q1[j]));
}

TEST(QuantRows, Q8_0ZeroBlock) {
  const std::vector<float> x(32, 0.0f);
  const auto out = quantize(DType::Q8_0, x);
  for (const uint8_t b : out) EXPECT_EQ(b, 0);
}

TEST(QuantRows, Q4_0HandComputed) {
  std::vector<float> x(64, 0.0f);
  // block 0: largest magnitude -8 -> d = 1, id = 1, q = min(15, int(x + 8.5))
  const float b0[7] = {-8.0f, 7.0f, 7.4f, -0.5f, -0.6f, 0.49f, 3.0f};
  const uint8_t q0[7] = {0, 15, 15, 8, 7, 8, 11};
  // block 1: largest magnitude +8 -> d = -1, id = -1, q = min(15, int(8.5 - x))
  const float b1[4] = {8.0f, -7.0f, -8.0f, 2.0f};
  const uint8_t q1[4] = {0, 15, 15, 6};
  std::memcpy(x.data(), b0, sizeof b0);
  x[16] = -2.0f;  // high nibble of byte 0 of block 0: int(6.5) = 6
  std::memcpy(x.data() + 32, b1, sizeof b1);
  const auto out = quantize(DType::Q4_0, x);
  ASSERT_EQ(out.size(), 2 * sizeof(BlockQ4_0));
  BlockQ4_0 blk[2];
  std::memcpy(blk, out.data(), sizeof blk);
  EXPECT_EQ(blk[0].d, 0x3c00);  // 1.0
  EXPECT_EQ(blk[1].d, 0xbc00);  // -1.0
  EXPECT_EQ(blk[0].qs[0], uint8_t(q0[0] | (6 << 4)));
  for (int j = 1; j < 7; ++j) EXPECT_EQ(blk[0].qs[j], uint8_t(q0[j] | (8 << 4))) << j;
  for (int j = 0; j < 4; ++j) EXPECT_EQ(blk[1].qs[j], uint8_t(q1[j] | (8 << 4))) << j;
  std::vector<float> back(64);
  dequantize_row(DType::Q4_0, out.data(), back.data(), 64);
  for (int j = 0; j < 7; ++j) EXPECT_EQ(back[size_t(j)], float(int(q0[j]) - 8)) << j;
  EXPECT_EQ(back[16], -2.0f);
  for (int j = 0; j < 4; ++j) EXPECT_EQ(back[size_t(32 + j)], -float(int(q1[j]) - 8)) << j;
}

TEST(QuantRows, Q4_0FirstLargestMagnitudeWins) {
  std::vector<float> x(32, 0.0f);
  x[2] = -4.0f;
  x[9] = 4.0f;  // same magnitude later: the scale keeps the sign of x[2]
  const auto out = quantize(DType::Q4_0, x);
  BlockQ4_0 blk;
  std::memcpy(&blk, out.data(), sizeof blk);
  EXPECT_EQ(blk.d, f32_to_fp16(0.5f));
  EXPECT_EQ(blk.qs[2] & 15, 0);   // -4 * 2 + 8.5 -> 0
  EXPECT_EQ(blk.qs[9] & 15, 15);  // 4 * 2 + 8.5 = 16.5 -> clamped to 15
}

TEST(QuantRows, Q4_0RoundTripError) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(32 * 64);
  for (auto& v : x) v = nd(rng);
  const auto out = quantize(DType::Q4_0, x);
  std::vector<float> back(x.size());
  dequantize_row(DType::Q4_0, out.data(), back.data(), int64_t(x.size()));
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    // Half a step (amax/16) within [-8d, 7d]; a value beyond 7d on the other side of
    // the extreme is clamped to 7d, up to one step (amax/8). Plus the F16 scale error.
    for (size_t j = 0; j < 32; ++j) {
      const float err = std::fabs(back[b * 32 + j] - x[b * 32 + j]);
      const bool clamped = (out[b * 18 + 2 + j % 16] >> (j < 16 ? 0 : 4) & 15) == 15;
      EXPECT_LE(err, (clamped ? amax / 8 : amax / 16) * 1.01f + 1e-6f) << b << " " << j;
    }
  }
}

TEST(QuantRows, RejectsBadLengthsAndTypes) {
  std::vector<float> x(48, 1.0f);
  std::vector<uint8_t> buf(1024);
  EXPECT_THROW(quantize_row(DType::Q8_0, x.data(), buf.data(), 48), Error);
  EXPECT_THROW(quantize_row(DType::I32, x.data(), buf.data(), 4), Error);
  EXPECT_THROW(dequantize_row(DType::Q4_0, buf.data(), x.data(), 40), Error);
  // Every entry of the table: no row conversion, or a length of part of a block.
  for (const DTypeInfo& t : dtype_table()) {
    SCOPED_TRACE(std::string(t.name));
    if (!t.to_f32) {
      EXPECT_THROW(quantize_row(t.type, x.data(), buf.data(), 4), Error);
      EXPECT_THROW(dequantize_row(t.type, buf.data(), x.data(), 4), Error);
    } else if (t.block_size > 1) {
      EXPECT_THROW(quantize_row(t.type, x.data(), buf.data(), t.block_size - 1), Error);
      EXPECT_THROW(dequantize_row(t.type, buf.data(), x.data(), t.block_size + 1), Error);
    }
    EXPECT_THROW(quantize_row(t.type, x.data(), buf.data(), -1), Error);
  }
  EXPECT_THROW(quantize_row(static_cast<DType>(99), x.data(), buf.data(), 4), Error);
}

TEST(DTypeTable, EntriesAreConsistent) {
  std::string names;
  for (const DTypeInfo& t : dtype_table()) {
    SCOPED_TRACE(std::string(t.name));
    const auto by_id = dtype_info(static_cast<uint32_t>(t.type));
    ASSERT_TRUE(by_id);
    EXPECT_EQ(by_id->name, t.name);
    EXPECT_EQ(&info(t.type), &t);
    EXPECT_EQ(dtype_name(t.type), t.name);
    EXPECT_EQ(parse_dtype(t.name), t.type);
    std::string upper(t.name);
    for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(parse_dtype(upper), t.type);
    EXPECT_GE(t.block_size, 1);
    EXPECT_GT(t.block_bytes, 0u);
    EXPECT_EQ(row_bytes(t.type, 3 * t.block_size), 3 * t.block_bytes);
    EXPECT_EQ(t.to_f32 == nullptr, t.from_f32 == nullptr);
    EXPECT_TRUE(!t.matrix || t.to_f32) << "a weight type converts its rows";
    if (t.matrix) names += (names.empty() ? "" : ", ") + std::string(t.name);
  }
  EXPECT_EQ(matrix_type_names(), names);
  EXPECT_EQ(matrix_type_names(),
            "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_k, q3_k, q4_k, q5_k, q6_k");
  EXPECT_FALSE(dtype_info(99));
  EXPECT_FALSE(parse_dtype("q4_2"));
}

// Every type with row conversions: rows of random values come back within half the
// largest magnitude of their block (a loose bound that any encoding meets and that a
// misplaced value or scale breaks; the type-specific tests above are exact), the
// zero row comes back zero, and the conversions write only their row_bytes.
TEST(QuantRows, EveryTableTypeRoundTrips) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  for (const DTypeInfo& t : dtype_table()) {
    if (!t.to_f32) continue;
    SCOPED_TRACE(std::string(t.name));
    const int64_t bs = t.block_size, n = 8 * std::max<int64_t>(bs, 32);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = u(rng);
    std::vector<uint8_t> enc(row_bytes(t.type, n) + 16, 0xEE);
    quantize_row(t.type, x.data(), enc.data(), n);
    for (size_t i = enc.size() - 16; i < enc.size(); ++i) ASSERT_EQ(enc[i], 0xEE) << "wrote past";
    std::vector<float> back(size_t(n) + 4, 7.0f);
    dequantize_row(t.type, enc.data(), back.data(), n);
    for (size_t i = size_t(n); i < back.size(); ++i) ASSERT_EQ(back[i], 7.0f) << "wrote past";
    for (int64_t b = 0; b < n; b += bs) {
      float amax = 0.0f;
      for (int64_t j = b; j < b + bs; ++j) amax = std::max(amax, std::fabs(x[size_t(j)]));
      for (int64_t j = b; j < b + bs; ++j)
        ASSERT_LE(std::fabs(back[size_t(j)] - x[size_t(j)]), 0.5f * amax) << "value " << j;
    }
    const std::vector<float> zeros(size_t(n), 0.0f);
    quantize_row(t.type, zeros.data(), enc.data(), n);
    dequantize_row(t.type, enc.data(), back.data(), n);
    for (int64_t j = 0; j < n; ++j) ASSERT_EQ(back[size_t(j)], 0.0f) << "value " << j;
  }
}
