#pragma once
// Scalar IEEE half and bfloat16 conversions (round to nearest even).
#include <cstdint>
#include <cstring>

namespace tandem {

inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    // zero or subnormal: man * 2^-24
    float v = float(man) * (1.0f / 16777216.0f);
    return f32_from_bits(f32_bits(v) | sign);
  }
  if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (man << 13));
  return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

inline uint16_t f32_to_fp16(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to inf
  if (ax < 0x38800000u) {
    // subnormal half (or zero): value / 2^-24, rounded to nearest even
    const float v = f32_from_bits(ax) * 16777216.0f;
    // v < 1024 here; round half to even
    uint32_t i = uint32_t(v);
    const float frac = v - float(i);
    if (frac > 0.5f || (frac == 0.5f && (i & 1u))) ++i;
    return uint16_t(sign | i);
  }
  const uint32_t mant_round = ax + 0xfffu + ((ax >> 13) & 1u);
  return uint16_t(sign | ((mant_round - 0x38000000u) >> 13));
}

inline float bf16_to_f32(uint16_t b) { return f32_from_bits(uint32_t(b) << 16); }

inline uint16_t f32_to_bf16(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace tandem
