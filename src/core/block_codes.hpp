#pragma once
// Private to core: what the row conversions of the GGUF blocks of 32 share
// (quant_rows.cpp, quant_rows_legacy.cpp): the value of largest magnitude, the rule of
// the scale-only types, and where a block keeps its 4-bit codes and fifth bits.
#include <cmath>
#include <cstdint>

#include "tandem/core/dtype.hpp"

namespace tandem::detail {

// The value of largest magnitude of v[0..n), with its sign: the first one on a tie,
// 0 when all are 0.
inline float signed_absmax(const float* v, int n) {
  float amax = 0.0f, m = 0.0f;
  for (int j = 0; j < n; ++j) {
    const float a = std::fabs(v[j]);
    if (a > amax) {
      amax = a;
      m = v[j];
    }
  }
  return m;
}

// The code of x under a scale-only rule: min(top, trunc(x * id + bias)), in f32.
inline uint8_t biased_code(float x, float id, float bias, int top) {
  const float scaled = x * id;  // separate statement: no fused multiply-add
  const float shifted = scaled + bias;
  const int q = static_cast<int>(shifted);
  return static_cast<uint8_t>(q < top ? q : top);
}

// Codes (0..31) of the 32 values of a block into qs[16]: value j in the low nibble of
// qs[j], value j + 16 in the high nibble. Returns their fifth bits (bit j: bit 4 of
// code j), the qh of the 5-bit types.
inline uint32_t pack_codes(const uint8_t (&q)[kQBlock], uint8_t* qs) {
  constexpr int kHalf = kQBlock / 2;
  uint32_t qh = 0;
  for (int j = 0; j < kHalf; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + kHalf] & 15) << 4));
    qh |= uint32_t(q[j] >> 4 & 1) << j;
    qh |= uint32_t(q[j + kHalf] >> 4 & 1) << (j + kHalf);
  }
  return qh;
}

// The inverse of pack_codes: codes from qs and the fifth bits qh (0 for 4-bit codes).
inline void unpack_codes(const uint8_t* qs, uint32_t qh, uint8_t (&q)[kQBlock]) {
  constexpr int kHalf = kQBlock / 2;
  for (int j = 0; j < kHalf; ++j) {
    q[j] = static_cast<uint8_t>((qs[j] & 15) | ((qh >> j & 1) << 4));
    q[j + kHalf] = static_cast<uint8_t>((qs[j] >> 4) | ((qh >> (j + kHalf) & 1) << 4));
  }
}

}  // namespace tandem::detail
