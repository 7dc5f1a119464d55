// Row conversions of the further GGUF blocks of 32 (Q4_1, Q5_0, Q5_1, IQ4_NL; layouts in
// dtype.hpp). Encoding is the standard GGUF rule of each type for blocks without
// importance weights, in the same f32 operations and order, so a file written here
// holds the bytes other GGUF writers produce from the same values (checked against a
// peer quantizer by scripts/peer-quantize-check.sh):
//   Q4_1, Q5_1 (scale and minimum): lo, hi = min, max of the block, d = (hi - lo) / top
//     (top = 15, 31), code = min(top, trunc((x - lo) * id + 0.5)); d and m = lo as F16.
//   Q5_0 (scale only): m = the value of largest magnitude (signed, the first on a tie),
//     d = m / -16, code = min(31, trunc(x * id + 16.5)); d as F16.
//   IQ4_NL: per block a scale d searched over the table kIq4nlValues with weights x^2
//     (encode_iq4_nl), code = the nearest table entry to x / d; d as F16.
// With id = (d != 0 ? 1/d : 0), computed in f32.
#include <cfloat>
#include <cmath>
#include <cstring>

#include "tandem/core/fp16.hpp"
#include "core/block_codes.hpp"
#include "core/row_codecs.hpp"

namespace tandem::detail {
namespace {

constexpr float kIq4nlZeroBlock = 1e-15f;  // blocks with max|x| below this get d = 0
constexpr int kIq4nlSteps = 7;             // scale candidates either side of the first

template <class Block>
Block read_block(const void* src, int64_t b) {
  Block blk;
  std::memcpy(&blk, static_cast<const uint8_t*>(src) + b * int64_t(sizeof(Block)), sizeof blk);
  return blk;
}

template <class Block>
void write_block(void* dst, int64_t b, const Block& blk) {
  std::memcpy(static_cast<uint8_t*>(dst) + b * int64_t(sizeof(Block)), &blk, sizeof blk);
}

uint32_t load_qh(const uint8_t (&qh)[4]) {
  uint32_t v;
  std::memcpy(&v, qh, 4);
  return v;
}

// Decodes every block of a row: out[j] = value(blk, code j), the codes unpacked from the
// block's nibbles and (where it has them) fifth bits.
template <class Block, class Value>
void decode_row(const void* src, float* dst, int64_t n, Value value) {
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const Block blk = read_block<Block>(src, b);
    uint32_t qh = 0;
    if constexpr (requires { blk.qh; }) qh = load_qh(blk.qh);
    uint8_t q[kQBlock];
    unpack_codes(blk.qs, qh, q);
    for (int j = 0; j < kQBlock; ++j) dst[b * kQBlock + j] = value(blk, int(q[j]));
  }
}

// d * code + m (the types with a minimum).
template <class Block>
float scaled_plus_min(const Block& blk, int code) {
  const float s = fp16_to_f32(blk.d) * float(code);  // separate statement: no fused multiply-add
  return s + fp16_to_f32(blk.m);
}

// The scale-and-minimum rule of Q4_1 and Q5_1: codes 0..top; d and the minimum as F16.
template <class Block>
void encode_min_scale(const float* x, void* dst, int64_t n, int top) {
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const float* v = x + b * kQBlock;
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < kQBlock; ++j) {
      if (v[j] < lo) lo = v[j];
      if (v[j] > hi) hi = v[j];
    }
    const float d = (hi - lo) / float(top);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t q[kQBlock];
    for (int j = 0; j < kQBlock; ++j) q[j] = biased_code(v[j] - lo, id, 0.5f, top);
    Block blk{};
    blk.d = f32_to_fp16(d);
    blk.m = f32_to_fp16(lo);
    const uint32_t qh = pack_codes(q, blk.qs);
    if constexpr (requires { blk.qh; }) std::memcpy(blk.qh, &qh, 4);
    write_block(dst, b, blk);
  }
}

// Index of the entry of kIq4nlValues nearest to x (the lower one on a tie); the
// table is ascending.
int iq4nl_nearest(float x) {
  const int8_t* t = kIq4nlValues;
  if (x <= float(t[0])) return 0;
  if (x >= float(t[15])) return 15;
  int lo = 0, hi = 15;  // t[lo] <= x < t[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < float(t[mid]))
      hi = mid;
    else
      lo = mid;
  }
  const float below = x - float(t[lo]);
  const float above = float(t[hi]) - x;
  return below < above ? lo : hi;
}

// The weighted fit of the table to a block for inverse scale id: with q_j the table
// entry nearest to id * x_j and weights w_j = x_j^2, sum w q x and sum w q^2 (in f32,
// in index order). q, when set, receives the indices.
struct Fit {
  float sumqx = 0.0f, sumq2 = 0.0f;
};
Fit iq4nl_fit(const float* v, const float* w, float id, uint8_t* q = nullptr) {
  Fit f;
  for (int j = 0; j < kQBlock; ++j) {
    const float scaled = id * v[j];
    const int l = iq4nl_nearest(scaled);
    if (q) q[j] = uint8_t(l);
    const float tq = float(kIq4nlValues[l]);
    const float wq = w[j] * tq;  // separate statements: no fused multiply-add
    const float wqx = wq * v[j];
    const float wqq = wq * tq;
    f.sumqx += wqx;
    f.sumq2 += wqq;
  }
  return f;
}

// IQ4_NL: the scale d minimizing the weighted error sum w (x - d q)^2 among the least-
// squares scales of the table fitted at inverse scales (s - 127) / m for s = 0 and
// s = -7..7 (m: the value of largest magnitude), keeping the first best; then every
// code the entry nearest to x / d with the f32 d.
void encode_iq4_nl(const float* x, void* dst, int64_t n) {
  const float t0 = float(kIq4nlValues[0]);
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const float* v = x + b * kQBlock;
    float w[kQBlock];
    for (int j = 0; j < kQBlock; ++j) w[j] = v[j] * v[j];
    const float m = signed_absmax(v, kQBlock);
    float d = 0.0f;
    if (std::fabs(m) >= kIq4nlZeroBlock) {
      const Fit first = iq4nl_fit(v, w, 1.0f / (-m / t0));
      d = first.sumq2 > 0.0f ? first.sumqx / first.sumq2 : 0.0f;
      float best = d * first.sumqx;
      for (int s = -kIq4nlSteps; s <= kIq4nlSteps; ++s) {
        const Fit f = iq4nl_fit(v, w, float(s + kIq4nlValues[0]) / m);
        const float gain = f.sumqx * f.sumqx;  // separate statements: no fused multiply-add
        const float bar = best * f.sumq2;
        if (f.sumq2 > 0.0f && gain > bar) {
          d = f.sumqx / f.sumq2;
          best = d * f.sumqx;
        }
      }
    }
    BlockIQ4_NL blk{};
    blk.d = f32_to_fp16(d);
    uint8_t q[kQBlock];
    iq4nl_fit(v, w, d != 0.0f ? 1.0f / d : 0.0f, q);
    pack_codes(q, blk.qs);
    write_block(dst, b, blk);
  }
}

}  // namespace

void q4_1_row_to_f32(const void* src, float* dst, int64_t n) {
  decode_row<BlockQ4_1>(src, dst, n, scaled_plus_min<BlockQ4_1>);
}

void q4_1_row_from_f32(const float* src, void* dst, int64_t n) {
  encode_min_scale<BlockQ4_1>(src, dst, n, 15);
}

void q5_0_row_to_f32(const void* src, float* dst, int64_t n) {
  decode_row<BlockQ5_0>(src, dst, n, [](const BlockQ5_0& blk, int code) {
    return fp16_to_f32(blk.d) * float(code - 16);
  });
}

void q5_0_row_from_f32(const float* src, void* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const float* v = src + b * kQBlock;
    const float d = signed_absmax(v, kQBlock) / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t q[kQBlock];
    for (int j = 0; j < kQBlock; ++j) q[j] = biased_code(v[j], id, 16.5f, 31);
    BlockQ5_0 blk{};
    blk.d = f32_to_fp16(d);
    const uint32_t qh = pack_codes(q, blk.qs);
    std::memcpy(blk.qh, &qh, 4);
    write_block(dst, b, blk);
  }
}

void q5_1_row_to_f32(const void* src, float* dst, int64_t n) {
  decode_row<BlockQ5_1>(src, dst, n, scaled_plus_min<BlockQ5_1>);
}

void q5_1_row_from_f32(const float* src, void* dst, int64_t n) {
  encode_min_scale<BlockQ5_1>(src, dst, n, 31);
}

void iq4_nl_row_to_f32(const void* src, float* dst, int64_t n) {
  decode_row<BlockIQ4_NL>(src, dst, n, [](const BlockIQ4_NL& blk, int code) {
    return fp16_to_f32(blk.d) * float(kIq4nlValues[code]);
  });
}

void iq4_nl_row_from_f32(const float* src, void* dst, int64_t n) { encode_iq4_nl(src, dst, n); }

}  // namespace tandem::detail
