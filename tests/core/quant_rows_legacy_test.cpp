// Row conversions of the further blocks of 32 (Q4_1, Q5_0, Q5_1, IQ4_NL;
// core/quant_rows_legacy.cpp): decoding of hand-built blocks, the error of encoding
// then decoding, and values each type represents exactly coming back unchanged.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tandem/core/fp16.hpp"
#include "tandem/core/quant_rows.hpp"

using namespace tandem;

namespace {

std::vector<float> decode(DType t, const void* blk) {
  std::vector<float> out(32);
  dequantize_row(t, blk, out.data(), 32);
  return out;
}

template <class Block>
Block encode_block(DType t, const std::vector<float>& x) {
  Block b;
  quantize_row(t, x.data(), &b, 32);
  return b;
}

// The nibbles of every hand-built block below: byte j = j | (15 - j) << 4, so value j
// has code j and value 16 + j has code 15 - j (low nibbles first).
template <class Block>
void fill_nibbles(Block& b) {
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
}
// Fifth bits 0xF0F0A5A5 (little-endian): set for values 0, 2, 5, 7, 8, 10, 13, 15, 20..23
// and 28..31.
constexpr uint8_t kQh[4] = {0xA5, 0xA5, 0xF0, 0xF0};
constexpr int kHigh[32] = {1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1,
                           0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1};
int nibble(int j) { return j < 16 ? j : 31 - j; }

TEST(QuantRowsLegacy, Q4_1HandBuiltBlock) {
  BlockQ4_1 b{};
  b.d = 0x3800;  // 0.5
  b.m = 0xc200;  // -3
  fill_nibbles(b);
  const std::vector<float> out = decode(DType::Q4_1, &b);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], 0.5f * float(nibble(j)) - 3.0f) << j;
  EXPECT_EQ(out[0], -3.0f);
  EXPECT_EQ(out[15], 4.5f);
  EXPECT_EQ(out[16], 4.5f);
  EXPECT_EQ(out[30], -2.5f);
}

TEST(QuantRowsLegacy, Q5_0HandBuiltBlock) {
  BlockQ5_0 b{};
  b.d = 0x4000;  // 2
  std::memcpy(b.qh, kQh, 4);
  fill_nibbles(b);
  const std::vector<float> out = decode(DType::Q5_0, &b);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], 2.0f * float(nibble(j) + 16 * kHigh[j] - 16)) << j;
  EXPECT_EQ(out[0], 0.0f);     // code 16
  EXPECT_EQ(out[1], -30.0f);   // code 1
  EXPECT_EQ(out[15], 30.0f);   // code 31
  EXPECT_EQ(out[16], -2.0f);   // code 15
  EXPECT_EQ(out[20], 22.0f);   // code 27
  EXPECT_EQ(out[31], 0.0f);    // code 16
}

TEST(QuantRowsLegacy, Q5_1HandBuiltBlock) {
  BlockQ5_1 b{};
  b.d = 0x3400;  // 0.25
  b.m = 0x3e00;  // 1.5
  std::memcpy(b.qh, kQh, 4);
  fill_nibbles(b);
  const std::vector<float> out = decode(DType::Q5_1, &b);
  for (int j = 0; j < 32; ++j)
    EXPECT_EQ(out[j], 0.25f * float(nibble(j) + 16 * kHigh[j]) + 1.5f) << j;
  EXPECT_EQ(out[1], 1.75f);    // code 1
  EXPECT_EQ(out[15], 9.25f);   // code 31
  EXPECT_EQ(out[20], 8.25f);   // code 27
  EXPECT_EQ(out[24], 3.25f);   // code 7
}

TEST(QuantRowsLegacy, IQ4_NLHandBuiltBlock) {
  BlockIQ4_NL b{};
  b.d = 0xb800;  // -0.5
  fill_nibbles(b);
  const std::vector<float> out = decode(DType::IQ4_NL, &b);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], -0.5f * float(kIq4nlValues[nibble(j)])) << j;
  EXPECT_EQ(out[0], 63.5f);    // entry 0: -127
  EXPECT_EQ(out[8], -0.5f);    // entry 8: 1
  EXPECT_EQ(out[15], -56.5f);  // entry 15: 113
  EXPECT_EQ(out[17], -44.5f);  // entry 14: 89
}

// Values of the form each type decodes to, with scales exact in F16: encoding finds
// the same scale (and minimum) and codes, so decoding gives the values back exactly.
TEST(QuantRowsLegacy, RepresentableValuesComeBack) {
  std::mt19937 rng(9);
  std::vector<int> codes(32);
  auto shuffled = [&](int n) {
    for (int j = 0; j < 32; ++j) codes[size_t(j)] = j % n;
    std::shuffle(codes.begin(), codes.end(), rng);
    return codes;
  };
  struct Case {
    DType type;
    std::vector<float> x;
  };
  std::vector<Case> cases;
  for (int rep = 0; rep < 4; ++rep) {
    std::vector<float> q41(32), q50(32), q51(32), iq4(32);
    const std::vector<int> c16 = shuffled(16);
    for (int j = 0; j < 32; ++j) q41[size_t(j)] = -2.0f + 0.5f * float(c16[size_t(j)]);
    const std::vector<int> c32 = shuffled(32);  // every code once: -16 sets the scale
    for (int j = 0; j < 32; ++j) q50[size_t(j)] = 0.125f * float(c32[size_t(j)] - 16);
    for (int j = 0; j < 32; ++j) q51[size_t(j)] = 1.0f + 0.25f * float(c32[size_t(j)]);
    const std::vector<int> t16 = shuffled(16);
    for (int j = 0; j < 32; ++j) iq4[size_t(j)] = 0.5f * float(kIq4nlValues[t16[size_t(j)]]);
    cases.push_back({DType::Q4_1, q41});
    cases.push_back({DType::Q5_0, q50});
    cases.push_back({DType::Q5_1, q51});
    cases.push_back({DType::IQ4_NL, iq4});
  }
  cases.push_back({DType::Q4_1, std::vector<float>(32, 1.25f)});  // d = 0, m = 1.25
  cases.push_back({DType::Q5_1, std::vector<float>(32, -3.5f)});
  for (const Case& c : cases) {
    SCOPED_TRACE(dtype_name(c.type));
    std::vector<uint8_t> enc(row_bytes(c.type, 32));
    quantize_row(c.type, c.x.data(), enc.data(), 32);
    std::vector<float> back(32);
    dequantize_row(c.type, enc.data(), back.data(), 32);
    for (int j = 0; j < 32; ++j) ASSERT_EQ(back[size_t(j)], c.x[size_t(j)]) << j;
  }
}

double half(float f) { return double(fp16_to_f32(f32_to_fp16(f))); }

// Random rows of several magnitudes, with a zero value and an all-zero block.
std::vector<float> random_row(float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> x(40 * 32);
  for (auto& v : x) v = u(rng);
  x[5] = 0.0f;
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);
  return x;
}

// Q4_1 / Q5_1: with lo, hi the block's extremes and d = (hi - lo) / top, every value
// comes back within half a step, plus what storing d and lo as F16 moves it
// (top * |d16 - d| + |m16 - lo|).
TEST(QuantRowsLegacy, MinScaleRoundTripError) {
  for (DType t : {DType::Q4_1, DType::Q5_1}) {
    const int top = t == DType::Q4_1 ? 15 : 31;
    for (float scale : {1e-3f, 1.0f, 37.0f, 1000.0f}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(t) << " scale " << scale);
      const std::vector<float> x = random_row(scale, 21);
      std::vector<uint8_t> enc(row_bytes(t, int64_t(x.size())));
      quantize_row(t, x.data(), enc.data(), int64_t(x.size()));
      std::vector<float> back(x.size());
      dequantize_row(t, enc.data(), back.data(), int64_t(x.size()));
      for (size_t b = 0; b < x.size() / 32; ++b) {
        const auto [lo, hi] = std::minmax_element(x.begin() + b * 32, x.begin() + b * 32 + 32);
        const double d = (double(*hi) - *lo) / top;
        const double bound = d / 2 + top * std::fabs(half(float(d)) - d) +
                             std::fabs(half(*lo) - *lo) + 1e-6 * scale;
        for (size_t j = b * 32; j < b * 32 + 32; ++j)
          ASSERT_LE(std::fabs(double(back[j]) - x[j]), bound * (1 + 1e-4)) << "value " << j;
      }
    }
  }
}

// Q5_0: d = m / -16 (m the value of largest magnitude); values come back within half a
// step, a full step where the top code 31 was capped, plus 16 * |d16 - d|.
TEST(QuantRowsLegacy, Q5_0RoundTripError) {
  for (float scale : {1e-3f, 1.0f, 37.0f, 1000.0f}) {
    SCOPED_TRACE(::testing::Message() << "scale " << scale);
    const std::vector<float> x = random_row(scale, 22);
    std::vector<BlockQ5_0> enc(x.size() / 32);
    quantize_row(DType::Q5_0, x.data(), enc.data(), int64_t(x.size()));
    std::vector<float> back(x.size());
    dequantize_row(DType::Q5_0, enc.data(), back.data(), int64_t(x.size()));
    for (size_t b = 0; b < enc.size(); ++b) {
      double amax = 0.0;
      for (size_t j = b * 32; j < b * 32 + 32; ++j) amax = std::max(amax, std::fabs(double(x[j])));
      const double d = amax / 16;
      uint32_t qh;
      std::memcpy(&qh, enc[b].qh, 4);
      for (int j = 0; j < 32; ++j) {
        const int lo = j < 16 ? enc[b].qs[j] & 15 : enc[b].qs[j - 16] >> 4;
        const bool capped = (lo | (qh >> j & 1) << 4) == 31;
        const double bound =
            (capped ? d : d / 2) + 16 * std::fabs(half(float(d)) - d) + 1e-6 * scale;
        const size_t i = b * 32 + size_t(j);
        ASSERT_LE(std::fabs(double(back[i]) - x[i]), bound * (1 + 1e-4)) << "value " << i;
      }
    }
  }
}

// IQ4_NL: every value decodes to the table entry nearest to it at the block's scale (up
// to what rounding the scale to F16 moves: 127 * that error, twice), and the scale
// found fits the block at least as well (in the weighted error sum x^2 (x - value)^2 it
// minimizes) as the plain one, max|x| / 127 with nearest entries.
TEST(QuantRowsLegacy, IQ4_NLNearestEntriesAndAFittedScale) {
  auto nearest = [](double x, double d) {
    double best = 1e300;
    for (int8_t t : kIq4nlValues) best = std::min(best, std::fabs(x - d * t));
    return best;
  };
  for (float scale : {1e-3f, 1.0f, 37.0f, 1000.0f}) {
    SCOPED_TRACE(::testing::Message() << "scale " << scale);
    const std::vector<float> x = random_row(scale, 23);
    std::vector<BlockIQ4_NL> enc(x.size() / 32);
    quantize_row(DType::IQ4_NL, x.data(), enc.data(), int64_t(x.size()));
    std::vector<float> back(x.size());
    dequantize_row(DType::IQ4_NL, enc.data(), back.data(), int64_t(x.size()));
    for (size_t b = 0; b < enc.size(); ++b) {
      const double d = fp16_to_f32(enc[b].d);
      // At most half an F16 step (relative 2^-11; absolute 2^-25 among subnormals).
      const double f16_error = std::max(std::fabs(d) / 2048, std::ldexp(1.0, -25));
      double amax = 0.0;
      for (size_t j = b * 32; j < b * 32 + 32; ++j) amax = std::max(amax, std::fabs(double(x[j])));
      const double plain = amax / 127;
      double err = 0.0, err_plain = 0.0;
      for (size_t j = b * 32; j < b * 32 + 32; ++j) {
        const double e = std::fabs(double(back[j]) - x[j]);
        ASSERT_LE(e, nearest(x[j], d) + 2 * 127 * f16_error + 1e-6 * std::fabs(x[j]))
            << "value " << j;
        const double w = double(x[j]) * x[j];
        err += w * e * e;
        err_plain += w * std::pow(nearest(x[j], plain), 2);
      }
      EXPECT_LE(err, err_plain * 1.01 + 1e-30) << "block " << b;
    }
  }
}

}  // namespace
