// K-quant row conversions (core/quant_rows_k.cpp): decoding of hand-built super-blocks
// against values computed here from the GGUF block definitions, the error bounds of
// encoding (every value within half a step of the stored sub-block scale, or as
// near as the stored range allows), and blocks a type represents exactly coming back
// exactly. Byte identity with the reference quantizer is checked against its output
// (scripts/peer-quantize-check.sh), not here.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tandem/core/fp16.hpp"
#include "tandem/core/quant_rows.hpp"

using namespace tandem;

namespace {

constexpr int N = kKBlock;

// The parameters of sub-block s of one stored super-block, read here from the layout
// (the GGUF definitions): value = a * code - m with code in [cmin, cmax].
struct Sub {
  float a, m;
  int cmin, cmax;
};

int scale6_q4k(const uint8_t* p, int s, bool minimum) {
  if (s < 4) return p[s + (minimum ? 4 : 0)] & 63;
  const int low = minimum ? p[s + 4] >> 4 : p[s + 4] & 15;
  return low | (p[s - (minimum ? 0 : 4)] >> 6) << 4;
}
int scale6_q3k(const uint8_t* p, int s) {
  const int low = s < 8 ? p[s] & 15 : p[s - 8] >> 4;
  return low | ((p[8 + s % 4] >> (2 * (s / 4))) & 3) << 4;
}

int subs(DType t) { return t == DType::Q4_K || t == DType::Q5_K ? 8 : 16; }

Sub sub_params(DType t, const uint8_t* blk, int s) {
  switch (t) {
    case DType::Q2_K: {
      BlockQ2_K b;
      std::memcpy(&b, blk, sizeof b);
      return {fp16_to_f32(b.d) * float(b.scales[s] & 15), fp16_to_f32(b.dmin) * float(b.scales[s] >> 4), 0, 3};
    }
    case DType::Q3_K: {
      BlockQ3_K b;
      std::memcpy(&b, blk, sizeof b);
      return {fp16_to_f32(b.d) * float(scale6_q3k(b.scales, s) - 32), 0.0f, -4, 3};
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      uint16_t d, dmin;
      std::memcpy(&d, blk, 2);
      std::memcpy(&dmin, blk + 2, 2);
      return {fp16_to_f32(d) * float(scale6_q4k(blk + 4, s, false)),
              fp16_to_f32(dmin) * float(scale6_q4k(blk + 4, s, true)), 0,
              t == DType::Q4_K ? 15 : 31};
    }
    default: {
      BlockQ6_K b;
      std::memcpy(&b, blk, sizeof b);
      return {fp16_to_f32(b.d) * float(b.scales[s]), 0.0f, -32, 31};
    }
  }
}

std::vector<float> decode(DType t, const std::vector<uint8_t>& bytes) {
  std::vector<float> out(bytes.size() / info(t).block_bytes * N);
  dequantize_row(t, bytes.data(), out.data(), int64_t(out.size()));
  return out;
}

// Codes of a hand-built block: every sub-block uses every code, in a pattern that
// differs between sub-blocks and between halves of each run of 32.
int code_at(int i, int cmin, int cmax) { return cmin + (i * 7 + i / 16) % (cmax - cmin + 1); }

// The value i of a hand-built block whose sub-block parameters are sub[]: a*code - m.
void expect_block(DType t, const std::vector<uint8_t>& bytes, const std::vector<Sub>& sub) {
  const std::vector<float> v = decode(t, bytes);
  const int per = N / int(sub.size());
  for (int i = 0; i < N; ++i) {
    const Sub& p = sub[size_t(i / per)];
    const float want = p.a * float(code_at(i, p.cmin, p.cmax)) - p.m;
    ASSERT_EQ(v[size_t(i)], want) << dtype_name(t) << " value " << i;
  }
}

}  // namespace

TEST(QuantRowsK, Q4_KAndQ5_KDecodeHandBuiltBlocks) {
  // 6-bit scales sc = {1, 2, 3, 4, 16, 53, 47, 1}, minimums m = {5, 6, 7, 8, 33, 10, 63, 18}:
  // bytes 0-3 sc[0..3] | top bits of sc[4..7], bytes 4-7 m[0..3] | top bits of m[4..7],
  // bytes 8-11 low nibbles of sc[4..7] | those of m[4..7] << 4.
  const uint8_t scales[12] = {0x41, 0xC2, 0x83, 0x04, 0x85, 0x06, 0xC7, 0x48, 0x10, 0xA5, 0xFF, 0x21};
  const int sc[8] = {1, 2, 3, 4, 16, 53, 47, 1}, mn[8] = {5, 6, 7, 8, 33, 10, 63, 18};
  for (DType t : {DType::Q4_K, DType::Q5_K}) {
    const int cmax = t == DType::Q4_K ? 15 : 31;
    std::vector<uint8_t> bytes(info(t).block_bytes, 0);
    const uint16_t d = 0x3800, dmin = 0x3400;  // 0.5, 0.25
    std::memcpy(bytes.data(), &d, 2);
    std::memcpy(bytes.data() + 2, &dmin, 2);
    std::memcpy(bytes.data() + 4, scales, 12);
    uint8_t* qh = bytes.data() + 16;  // Q5_K only
    uint8_t* qs = bytes.data() + (t == DType::Q4_K ? 16 : 48);
    for (int i = 0; i < N; ++i) {
      const int q = code_at(i, 0, cmax);
      qs[32 * (i / 64) + i % 32] |= uint8_t((q & 15) << (i % 64 < 32 ? 0 : 4));
      if (q > 15) qh[i % 32] |= uint8_t(1 << (i / 32));
    }
    std::vector<Sub> sub;
    for (int s = 0; s < 8; ++s) sub.push_back({0.5f * float(sc[s]), 0.25f * float(mn[s]), 0, cmax});
    expect_block(t, bytes, sub);
    const std::vector<float> v = decode(t, bytes);
    EXPECT_EQ(v[0], -1.25f);  // code 0: -0.25 * 5
    // value 255: sub-block 7 (sc 1, m 18), code (255*7 + 15) % (cmax + 1) = 8
    EXPECT_EQ(v[255], 0.5f * 8 - 4.5f);
  }
}

TEST(QuantRowsK, Q2_KDecodesAHandBuiltBlock) {
  BlockQ2_K b{};
  b.d = 0x3c00;     // 1
  b.dmin = 0x3800;  // 0.5
  std::vector<Sub> sub;
  for (int s = 0; s < 16; ++s) {
    const int sc = (s * 5 + 1) % 16, m = (s * 3 + 2) % 16;  // every pair differs
    b.scales[s] = uint8_t(sc | m << 4);
    sub.push_back({float(sc), 0.5f * float(m), 0, 3});
  }
  for (int i = 0; i < N; ++i)
    b.qs[32 * (i / 128) + i % 32] |= uint8_t(code_at(i, 0, 3) << (2 * ((i % 128) / 32)));
  std::vector<uint8_t> bytes(sizeof b);
  std::memcpy(bytes.data(), &b, sizeof b);
  expect_block(DType::Q2_K, bytes, sub);
  EXPECT_EQ(decode(DType::Q2_K, bytes)[0], -1.0f);  // sc 1, m 2, code 0
}

TEST(QuantRowsK, Q3_KDecodesAHandBuiltBlock) {
  BlockQ3_K b{};
  b.d = 0xb400;  // -0.25
  std::vector<Sub> sub;
  for (int s = 0; s < 16; ++s) {
    const int u = (s * 13 + 7) % 64;  // stored 6-bit scale: scale u - 32
    b.scales[s % 8] |= uint8_t((u & 15) << (s < 8 ? 0 : 4));
    b.scales[8 + s % 4] |= uint8_t((u >> 4) << (2 * (s / 4)));
    sub.push_back({-0.25f * float(u - 32), 0.0f, -4, 3});
  }
  for (int i = 0; i < N; ++i) {
    const int q = code_at(i, -4, 3) + 4;  // low 2 bits in qs, bit 2 in hmask
    b.qs[32 * (i / 128) + i % 32] |= uint8_t((q & 3) << (2 * ((i % 128) / 32)));
    if (q & 4) b.hmask[i % 32] |= uint8_t(1 << (i / 32));
  }
  std::vector<uint8_t> bytes(sizeof b);
  std::memcpy(bytes.data(), &b, sizeof b);
  expect_block(DType::Q3_K, bytes, sub);
  EXPECT_EQ(decode(DType::Q3_K, bytes)[0], -25.0f);  // u 7: scale -0.25 * -25, code -4 (high bit clear)
}

TEST(QuantRowsK, Q6_KDecodesAHandBuiltBlock) {
  BlockQ6_K b{};
  b.d = 0x3400;  // 0.25
  std::vector<Sub> sub;
  for (int s = 0; s < 16; ++s) {
    b.scales[s] = int8_t(s % 2 ? -(s * 8 + 1) : s * 7 + 3);
    sub.push_back({0.25f * float(b.scales[s]), 0.0f, -32, 31});
  }
  for (int i = 0; i < N; ++i) {
    const int q = code_at(i, -32, 31) + 32, n = i / 128, r = (i % 128) / 32, l = i % 32;
    b.ql[64 * n + 32 * (r % 2) + l] |= uint8_t((q & 15) << (r < 2 ? 0 : 4));
    b.qh[32 * n + l] |= uint8_t((q >> 4) << (2 * r));
  }
  std::vector<uint8_t> bytes(sizeof b);
  std::memcpy(bytes.data(), &b, sizeof b);
  expect_block(DType::Q6_K, bytes, sub);
  EXPECT_EQ(decode(DType::Q6_K, bytes)[0], 0.75f * -32);  // scale 3, code -32
}

namespace {

const DType kKTypes[] = {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<uint8_t> encode(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> out(row_bytes(t, int64_t(x.size())));
  quantize_row(t, x.data(), out.data(), int64_t(x.size()));
  return out;
}

}  // namespace

// The codes are chosen last, against the scales as stored: every value lies within half
// a step of the stored sub-block scale, or (beyond the stored range) at the range's
// nearest end. And the scale search fits the data: the RMS error stays below a
// per-type fraction of the RMS of the values (about 1.3x what each type gives on
// Gaussian data: 0.29, 0.15, 0.071, 0.036, 0.018).
TEST(QuantRowsK, EncodingErrorBounds) {
  const double rms_bound[] = {0.39, 0.2, 0.095, 0.048, 0.027};  // Q2_K..Q6_K
  std::mt19937 rng(17);
  for (size_t k = 0; k < std::size(kKTypes); ++k) {
    const DType t = kKTypes[k];
    SCOPED_TRACE(std::string(dtype_name(t)));
    for (float scale : {1e-3f, 0.02f, 1.0f, 300.0f}) {
      std::normal_distribution<float> nd(0.0f, scale);
      std::vector<float> x(size_t(N) * 64);
      for (auto& v : x) v = nd(rng);
      for (int i = 0; i < 16; ++i) x[size_t(5 * N + i)] = 0.0f;                // a zero sub-block
      for (int i = 0; i < N; ++i) x[size_t(9 * N + i)] = std::fabs(x[size_t(9 * N + i)]);  // no negatives
      const auto enc = encode(t, x);
      const auto back = decode(t, enc);
      double se = 0, sx = 0;
      for (size_t blk = 0; blk < x.size() / N; ++blk) {
        const uint8_t* p = enc.data() + blk * info(t).block_bytes;
        for (int s = 0; s < subs(t); ++s) {
          const Sub sp = sub_params(t, p, s);
          const int per = N / subs(t);
          for (int i = s * per; i < (s + 1) * per; ++i) {
            const size_t j = blk * N + size_t(i);
            const double err = std::fabs(double(back[j]) - x[j]);
            se += err * err;
            sx += double(x[j]) * x[j];
            if (sp.a == 0.0f) continue;  // a zero scale keeps the fit's codes
            const double lo = std::min(double(sp.a) * sp.cmin, double(sp.a) * sp.cmax) - sp.m;
            const double hi = std::max(double(sp.a) * sp.cmin, double(sp.a) * sp.cmax) - sp.m;
            const double outside = std::max({0.0, lo - x[j], x[j] - hi});
            const double bound = std::max(std::fabs(double(sp.a)) / 2, outside);
            ASSERT_LE(err, bound * (1 + 1e-4) + 1e-6 * std::fabs(x[j]) + 1e-30)
                << "scale " << scale << " block " << blk << " value " << i;
          }
        }
      }
      EXPECT_LT(std::sqrt(se / sx), rms_bound[k]) << "scale " << scale;
    }
  }
}

// Blocks each type represents exactly come back exactly: per sub-block the values are
// c*q (- m) with codes spanning the type's whole range (so the scale search finds c, m
// exactly), and c, m multiples of the super-block scale the type's scale quantization
// lands on (a power of two over its steps: 63 for 6-bit scales and minimums, 15 for
// Q2_K's 4 bits, 128 and 32 for the signed Q6_K and Q3_K scales).
TEST(QuantRowsK, ExactlyRepresentableBlocksComeBackExactly) {
  std::mt19937 rng(5);
  for (const DType t : kKTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const bool with_min = t == DType::Q2_K || t == DType::Q4_K || t == DType::Q5_K;
    const int n_sub = subs(t), per = N / n_sub;
    const int cmax = t == DType::Q2_K ? 3 : t == DType::Q4_K ? 15 : t == DType::Q5_K ? 31 : 0;
    const int half = t == DType::Q3_K ? 4 : 32;  // signed codes -half..half-1
    const int steps = t == DType::Q2_K ? 15 : with_min ? 63 : t == DType::Q3_K ? 32 : 128;
    const float unit = 1.0f / 64;  // the super-block scale: steps * unit is the largest c
    std::vector<float> x(size_t(N) * 4);
    for (int blk = 0; blk < 4; ++blk)
      for (int s = 0; s < n_sub; ++s) {
        // The first sub-block holds the largest scale (and minimum); the others are
        // smaller whole multiples of unit (signed types: powers of two, which the
        // least-squares refit returns exactly).
        const int j = s == 0 ? steps : with_min ? 1 + int(rng() % unsigned(steps)) : steps >> (1 + rng() % 5);
        const int mj = s == 0 ? steps : 1 + int(rng() % unsigned(steps));
        const float c = float(j) * unit, m = with_min ? float(mj) * unit : 0.0f;
        for (int i = 0; i < per; ++i) {
          // codes: both ends of the range first, then random
          int q = i == 0 ? (with_min ? 0 : -half) : i == 1 ? (with_min ? cmax : half - 1)
                                                           : with_min ? int(rng() % unsigned(cmax + 1))
                                                                      : int(rng() % unsigned(2 * half)) - half;
          x[size_t(blk * N + s * per + i)] = c * float(q) - m;
        }
      }
    const auto back = decode(t, encode(t, x));
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(back[i], x[i]) << "value " << i;
  }
}

// The traits entries of the K-quants: names, super-blocks of 256 and their byte sizes,
// and the GGUF general.file_type of a model whose matrices all have the type.
TEST(QuantRowsK, TraitsEntries) {
  struct Want {
    DType t;
    const char* name;
    size_t bytes;
    uint32_t file_type;
  };
  for (const Want& w : {Want{DType::Q2_K, "q2_k", 84, 10}, Want{DType::Q3_K, "q3_k", 110, 11},
                        Want{DType::Q4_K, "q4_k", 144, 14}, Want{DType::Q5_K, "q5_k", 176, 16},
                        Want{DType::Q6_K, "q6_k", 210, 18}}) {
    const DTypeInfo& i = info(w.t);
    EXPECT_EQ(i.name, w.name);
    EXPECT_EQ(i.block_size, 256);
    EXPECT_EQ(i.block_bytes, w.bytes);
    EXPECT_EQ(i.file_type, w.file_type);
    EXPECT_TRUE(i.matrix);
    EXPECT_EQ(parse_dtype(w.name), w.t);
  }
}
