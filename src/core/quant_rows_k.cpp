// Row conversions of the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): super-blocks of 256
// values (kKBlock) in sub-blocks of 16 or 32 with their own quantized scales.
//
// Bit layouts (value i of a super-block, 0..255; "d" and "dmin" are F16; every
// multi-byte field little-endian):
//
//   Q2_K (84 bytes): scales[16], qs[64], d, dmin.
//     code q (0..3) = (qs[32*(i/128) + i%32] >> (2*((i%128)/32))) & 3
//     sub-block s = i/16 (16 values): scales[s] low nibble sc, high nibble m
//     value = (d * sc) * q - (dmin * m)
//   Q3_K (110 bytes): hmask[32], qs[64], scales[12], d.
//     low bits as Q2_K's code; high bit h = (hmask[i%32] >> (i/32)) & 1
//     code q (-4..3) = low + 4*h - 4 (a clear high bit means minus 4)
//     sub-block s = i/16: 6-bit u = low4 | hi2 << 4 with
//       low4 = s < 8 ? scales[s] & 15 : scales[s-8] >> 4
//       hi2  = (scales[8 + s%4] >> (2*(s/4))) & 3
//     value = (d * (u - 32)) * q
//   Q4_K (144 bytes): d, dmin, scales[12], qs[128].
//     code q (0..15) = qs[32*(i/64) + i%32] low nibble where i%64 < 32, else high nibble
//     sub-block s = i/32 (32 values): 6-bit scale sc and minimum m, packed as
//       s < 4: sc = scales[s] & 63,            m = scales[s+4] & 63
//       s >= 4: sc = (scales[s+4] & 15) | (scales[s-4] >> 6) << 4,
//               m  = (scales[s+4] >> 4) | (scales[s] >> 6) << 4
//     (bytes 0..3 hold sc 0..3 and the top bits of sc 4..7, bytes 4..7 m 0..3 and the
//     top bits of m 4..7, bytes 8..11 the low nibbles of sc 4..7 | m 4..7 << 4)
//     value = (d * sc) * q - (dmin * m)
//   Q5_K (176 bytes): d, dmin, scales[12] (as Q4_K), qh[32], qs[128].
//     code q (0..31) = Q4_K's nibble | ((qh[i%32] >> (i/32)) & 1) << 4
//     value as Q4_K
//   Q6_K (210 bytes): ql[128], qh[64], scales[16] (int8), d.
//     with n = i/128, k = i%128, quarter r = k/32, l = k%32:
//     low4 = ql[64n + 32*(r%2) + l] low nibble for r < 2, else high nibble
//     hi2 = (qh[32n + l] >> (2*r)) & 3;  code q (-32..31) = (low4 | hi2 << 4) - 32
//     sub-block s = i/16: value = (d * scales[s]) * q
//
// Encoding reproduces the GGUF reference quantizers without importance weights (what
// llama.cpp's quantize tool writes for these types then), so files match byte for
// byte: per sub-block a search for the scale (and minimum) of least weighted error,
// then the sub-block scales quantized against the super-block's largest, then every
// code chosen again with the scales as stored. Float operations happen in the order
// written here, each rounded to f32 on its own (this library is built without fused
// multiply-add contraction; clang is told so below).
#include <cmath>
#include <cstring>

#include "tandem/core/dtype.hpp"
#include "tandem/core/fp16.hpp"
#include "core/block_codes.hpp"
#include "core/row_codecs.hpp"

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace tandem {
namespace {

constexpr int kSub16 = kKBlock / 16, kSub32 = kKBlock / 32;
// A sub-block whose largest magnitude is below this is all zero (symmetric fits).
constexpr float kZeroGroup = 1e-15f;

// Nearest integer, ties to even, through the f32 addition of 1.5 * 2^23 (whose mantissa
// then holds v + 2^22): exact for |v| <= 2^22, which every quotient here stays within
// for finite inputs.
int nearest(float v) {
  const float biased = v + 12582912.0f;
  return int(f32_bits(biased) & 0x007fffffu) - 0x00400000;
}

int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

// The value of largest magnitude of x[0..n) (the first one on a tie), and its magnitude.
float largest(const float* x, int n, float& amax) {
  const float m = detail::signed_absmax(x, n);
  amax = std::fabs(m);
  return m;
}

// ---- scale searches ------------------------------------------------------------------

// Codes 0..nmax with value = scale * L - m (m >= 0) for the n values x under weights w:
// the scale from max - min (min clipped to <= 0), then nstep + 1 trial scales
// (nmax + rmin + 0.1*k) / (max - min), each with the weighted least-squares scale and
// minimum of its codes, keeping the one of least weighted error (absolute where mad,
// else squared). Returns the scale; m in *m_out; aux: n bytes of scratch.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* m_out,
                    uint8_t* aux, float rmin, int nstep, bool mad) {
  constexpr float kStep = 0.1f;
  float mn = x[0], mx = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < mn) mn = x[i];
    if (x[i] > mx) mx = x[i];
    const float wx = w[i] * x[i];
    sum_w += w[i];
    sum_x += wx;
  }
  if (mn > 0) mn = 0;
  if (mx == mn) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *m_out = -mn;
    return 0.0f;
  }
  auto error = [&](float scale, float min, const uint8_t* codes) {
    float e = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float sl = scale * float(codes[i]);
      const float diff = sl + min - x[i];
      const float d = mad ? std::fabs(diff) : diff * diff;
      const float wd = w[i] * d;
      e += wd;
    }
    return e;
  };
  float iscale = float(nmax) / (mx - mn);
  float scale = 1 / iscale;
  for (int i = 0; i < n; ++i) {
    const float shifted = x[i] - mn;
    L[i] = uint8_t(clamp_int(nearest(iscale * shifted), 0, nmax));
  }
  float best = error(scale, mn, L);
  for (int k = 0; k <= nstep; ++k) {
    const float step = kStep * float(k);
    const float top = rmin + step + float(nmax);
    iscale = top / (mx - mn);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const float shifted = x[i] - mn;
      const int l = clamp_int(nearest(iscale * shifted), 0, nmax);
      aux[i] = uint8_t(l);
      const float wl = w[i] * float(l);
      const float wll = wl * float(l);
      const float wlx = wl * x[i];
      sum_l += wl;
      sum_l2 += wll;
      sum_xl += wlx;
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det > 0) {
      float s = (sum_w * sum_xl - sum_x * sum_l) / det;
      float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
      if (m > 0) {
        m = 0;
        s = sum_xl / sum_l2;
      }
      const float e = error(s, m, aux);
      if (e < best) {
        std::memcpy(L, aux, size_t(n));
        best = e;
        scale = s;
        mn = m;
      }
    }
  }
  *m_out = -mn;
  return scale;
}

// Signed codes -nmax..nmax-1 (stored + nmax in L) with value = scale * code for the n
// values x, weighted by x^2: the scale from the largest magnitude (value -nmax), its
// least-squares refit, then 18 trial scales (nmax + 0.1*k) for k = -9..9, k != 0,
// keeping the best weighted fit. Returns the scale (0 for an all-zero group).
float fit_symmetric(int n, int nmax, const float* x, uint8_t* L) {
  float amax;
  const float m = largest(x, n, amax);
  if (amax < kZeroGroup) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  // The weighted sums of codes chosen with iscale; codes kept in L where keep.
  auto sums = [&](float iscale, float& sumlx, float& suml2, bool keep) {
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest(iscale * x[i]), -nmax, nmax - 1);
      if (keep) L[i] = uint8_t(l + nmax);
      const float w = x[i] * x[i];
      const float wx = w * x[i];
      const float wl = w * float(l);
      const float wxl = wx * float(l);
      const float wll = wl * float(l);
      sumlx += wxl;
      suml2 += wll;
    }
  };
  float sumlx, suml2;
  sums(float(-nmax) / m, sumlx, suml2, true);
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int k = -9; k <= 9; ++k) {
    if (k == 0) continue;
    const float top = float(nmax) + 0.1f * float(k);
    const float iscale = -top / m;
    sums(iscale, sumlx, suml2, false);
    const float gain = sumlx * sumlx;
    const float prev = best * suml2;
    if (suml2 > 0 && gain > prev) {
      sums(iscale, sumlx, suml2, true);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Signed codes -nmax..nmax-1 (stored + nmax in L) for Q3_K's sub-blocks: the codes of
// the largest magnitude's scale, then up to 5 passes moving single codes to the
// value that improves the x^2-weighted fit. Returns the least-squares scale.
float fit_codes(int n, int nmax, const float* x, uint8_t* L) {
  float amax;
  const float m = largest(x, n, amax);
  if (amax < kZeroGroup) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  int code[16];
  const float iscale = float(-nmax) / m;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    code[i] = clamp_int(nearest(iscale * x[i]), -nmax, nmax - 1);
    const float w = x[i] * x[i];
    const float wx = w * x[i];
    const float wl = w * float(code[i]);
    const float wxl = wx * float(code[i]);
    const float wll = wl * float(code[i]);
    sumlx += wxl;
    suml2 += wll;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const float wx = w * x[i];
      float slx = sumlx - wx * float(code[i]);
      if (!(slx > 0)) continue;
      const float wl = w * float(code[i]);
      float sl2 = suml2 - wl * float(code[i]);
      const float num = x[i] * sl2;
      const int nl = clamp_int(nearest(num / slx), -nmax, nmax - 1);
      if (nl == code[i]) continue;
      const float wxn = wx * float(nl);
      const float wn = w * float(nl);
      const float wnn = wn * float(nl);
      slx += wxn;
      sl2 += wnn;
      const float gain = slx * slx * suml2;
      const float prev = sumlx * sumlx * sl2;
      if (sl2 > 0 && gain > prev) {
        code[i] = nl;
        sumlx = slx;
        suml2 = sl2;
        ++changed;
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = uint8_t(code[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ---- shared packing --------------------------------------------------------------------

// Codes of 2 bits (Q2_K, Q3_K's low bits): value i in qs[32*(i/128) + i%32] at bit
// 2*((i%128)/32).
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int h = 0; h < kKBlock; h += 128)
    for (int l = 0; l < 32; ++l)
      qs[h / 4 + l] = uint8_t((L[h + l] & 3) | (L[h + l + 32] & 3) << 2 |
                              (L[h + l + 64] & 3) << 4 | (L[h + l + 96] & 3) << 6);
}
int unpack_2bit(const uint8_t* qs, int i) {
  return (qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
}
// Nibbles (Q4_K, Q5_K's low bits): value i in qs[32*(i/64) + i%32], high where i%64 >= 32.
void pack_nibbles(const uint8_t* L, uint8_t* qs) {
  for (int h = 0; h < kKBlock; h += 64)
    for (int l = 0; l < 32; ++l)
      qs[h / 2 + l] = uint8_t((L[h + l] & 15) | (L[h + l + 32] & 15) << 4);
}
int unpack_nibble(const uint8_t* qs, int i) {
  return (qs[32 * (i / 64) + i % 32] >> (i % 64 < 32 ? 0 : 4)) & 15;
}
// One bit per value (Q3_K's hmask, Q5_K's qh): value i at bit i/32 of byte i%32.
void pack_bits(const uint8_t* L, int bit, uint8_t* out) {
  std::memset(out, 0, 32);
  for (int i = 0; i < kKBlock; ++i) out[i % 32] |= uint8_t(((L[i] >> bit) & 1) << (i / 32));
}
int unpack_bit(const uint8_t* bits, int i) { return (bits[i % 32] >> (i / 32)) & 1; }

// Q4_K/Q5_K: 8 6-bit scales and minimums in 12 bytes.
void pack_scale_min6(const uint8_t* sc, const uint8_t* m, uint8_t* out) {
  for (int s = 0; s < 4; ++s) {
    out[s] = uint8_t(sc[s] | (sc[s + 4] >> 4) << 6);
    out[s + 4] = uint8_t(m[s] | (m[s + 4] >> 4) << 6);
    out[s + 8] = uint8_t((sc[s + 4] & 15) | (m[s + 4] & 15) << 4);
  }
}
void unpack_scale_min6(const uint8_t* p, int s, int& sc, int& m) {
  if (s < 4) {
    sc = p[s] & 63;
    m = p[s + 4] & 63;
  } else {
    sc = (p[s + 4] & 15) | (p[s - 4] >> 6) << 4;
    m = (p[s + 4] >> 4) | (p[s] >> 6) << 4;
  }
}
// Q3_K: 16 6-bit scales in 12 bytes.
void pack_scale6x16(const uint8_t* u, uint8_t* out) {
  std::memset(out, 0, 12);
  for (int s = 0; s < 16; ++s) {
    out[s % 8] |= uint8_t((u[s] & 15) << (s < 8 ? 0 : 4));
    out[8 + s % 4] |= uint8_t((u[s] >> 4) << (2 * (s / 4)));
  }
}
int unpack_scale6x16(const uint8_t* p, int s) {
  const int low = s < 8 ? p[s] & 15 : p[s - 8] >> 4;
  return low | ((p[8 + s % 4] >> (2 * (s / 4))) & 3) << 4;
}

// Codes 0..nmax for the values of sub-blocks of `sub` against the stored scales:
// code = nearest((x + dm) / d) with d = d16 * sc[s], dm = dmin16 * m[s]; a sub-block
// whose d is zero keeps the codes of its fit.
void requantize_min(const float* x, int sub, int nmax, float d16, float dmin16,
                    const int* sc, const int* m, uint8_t* L) {
  for (int s = 0; s < kKBlock / sub; ++s) {
    const float d = d16 * float(sc[s]);
    if (d == 0) continue;
    const float dm = dmin16 * float(m[s]);
    for (int i = s * sub; i < (s + 1) * sub; ++i) {
      const float shifted = x[i] + dm;
      L[i] = uint8_t(clamp_int(nearest(shifted / d), 0, nmax));
    }
  }
}
// Signed codes -half..half-1 (stored + half) for sub-blocks of 16 against the stored
// scales: code = nearest(x / (d16 * sc[s])); a zero scale keeps the fit's codes.
void requantize_sym(const float* x, int half, float d16, const int* sc, uint8_t* L) {
  for (int s = 0; s < kSub16; ++s) {
    const float d = d16 * float(sc[s]);
    if (d == 0) continue;
    for (int i = 16 * s; i < 16 * s + 16; ++i)
      L[i] = uint8_t(clamp_int(nearest(x[i] / d), -half, half - 1) + half);
  }
}

// The largest value of v[0..n) above 0 (0 when none).
float max_positive(const float* v, int n) {
  float mx = 0;
  for (int i = 0; i < n; ++i)
    if (v[i] > mx) mx = v[i];
  return mx;
}

// ---- encoders, one super-block each ----------------------------------------------------

void encode_q2_k(const float* x, BlockQ2_K& b) {
  uint8_t L[kKBlock], aux[16];
  float w[16], scale[kSub16], mn[kSub16];
  for (int s = 0; s < kSub16; ++s) {
    for (int i = 0; i < 16; ++i) w[i] = std::fabs(x[16 * s + i]);
    scale[s] = fit_scale_min(16, 3, x + 16 * s, w, L + 16 * s, &mn[s], aux, -0.5f, 15, true);
  }
  const float max_scale = max_positive(scale, kSub16), max_min = max_positive(mn, kSub16);
  // 4-bit sub-block scales and minimums against the largest of each (15 steps).
  for (int s = 0; s < kSub16; ++s) b.scales[s] = 0;
  if (max_scale > 0) {
    const float iscale = 15.0f / max_scale;
    for (int s = 0; s < kSub16; ++s) b.scales[s] = uint8_t(nearest(iscale * scale[s]));
  }
  b.d = f32_to_fp16(max_scale > 0 ? max_scale / 15.0f : 0.0f);
  if (max_min > 0) {
    const float imin = 15.0f / max_min;
    for (int s = 0; s < kSub16; ++s) b.scales[s] = uint8_t(b.scales[s] | nearest(imin * mn[s]) << 4);
  }
  b.dmin = f32_to_fp16(max_min > 0 ? max_min / 15.0f : 0.0f);
  int sc[kSub16], m[kSub16];
  for (int s = 0; s < kSub16; ++s) {
    sc[s] = b.scales[s] & 15;
    m[s] = b.scales[s] >> 4;
  }
  requantize_min(x, 16, 3, fp16_to_f32(b.d), fp16_to_f32(b.dmin), sc, m, L);
  pack_2bit(L, b.qs);
}

void encode_q3_k(const float* x, BlockQ3_K& b) {
  uint8_t L[kKBlock];
  float scale[kSub16];
  float amax = 0, max_scale = 0;
  for (int s = 0; s < kSub16; ++s) {
    scale[s] = fit_codes(16, 4, x + 16 * s, L + 16 * s);
    if (std::fabs(scale[s]) > amax) {
      amax = std::fabs(scale[s]);
      max_scale = scale[s];
    }
  }
  // 6-bit signed sub-block scales (stored + 32) against the largest magnitude (-32).
  uint8_t u[kSub16] = {};
  b.d = f32_to_fp16(0.0f);
  if (max_scale != 0) {
    const float iscale = -32.0f / max_scale;
    for (int s = 0; s < kSub16; ++s)
      u[s] = uint8_t(clamp_int(int8_t(nearest(iscale * scale[s])), -32, 31) + 32);
    b.d = f32_to_fp16(1 / iscale);
  }
  pack_scale6x16(u, b.scales);
  int sc[kSub16];
  for (int s = 0; s < kSub16; ++s) sc[s] = unpack_scale6x16(b.scales, s) - 32;
  requantize_sym(x, 4, fp16_to_f32(b.d), sc, L);
  pack_bits(L, 2, b.hmask);
  pack_2bit(L, b.qs);
}

// Q4_K and Q5_K: sub-blocks of 32 fit with weights rms(x) + |x|, 6-bit scales and
// minimums against the largest of each (63 steps).
template <typename Block>
void encode_scale_min6(const float* x, Block& b, int nmax, float rmin, int nstep, uint8_t* L) {
  uint8_t aux[32];
  float w[32], scale[kSub32], mn[kSub32];
  for (int s = 0; s < kSub32; ++s) {
    const float* xs = x + 32 * s;
    float sum_x2 = 0;
    for (int i = 0; i < 32; ++i) {
      const float sq = xs[i] * xs[i];
      sum_x2 += sq;
    }
    const float rms = std::sqrt(sum_x2 / 32);
    for (int i = 0; i < 32; ++i) w[i] = rms + std::fabs(xs[i]);
    scale[s] = fit_scale_min(32, nmax, xs, w, L + 32 * s, &mn[s], aux, rmin, nstep, false);
  }
  const float max_scale = max_positive(scale, kSub32), max_min = max_positive(mn, kSub32);
  const float iscale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float imin = max_min > 0 ? 63.0f / max_min : 0.0f;
  uint8_t sc8[kSub32], m8[kSub32];
  for (int s = 0; s < kSub32; ++s) {
    const uint8_t ls = uint8_t(nearest(iscale * scale[s])), lm = uint8_t(nearest(imin * mn[s]));
    sc8[s] = ls < 63 ? ls : 63;
    m8[s] = lm < 63 ? lm : 63;
  }
  pack_scale_min6(sc8, m8, b.scales);
  b.d = f32_to_fp16(max_scale / 63.0f);
  b.dmin = f32_to_fp16(max_min / 63.0f);
  int sc[kSub32], m[kSub32];
  for (int s = 0; s < kSub32; ++s) unpack_scale_min6(b.scales, s, sc[s], m[s]);
  requantize_min(x, 32, nmax, fp16_to_f32(b.d), fp16_to_f32(b.dmin), sc, m, L);
}

void encode_q4_k(const float* x, BlockQ4_K& b) {
  uint8_t L[kKBlock];
  encode_scale_min6(x, b, 15, -1.0f, 20, L);
  pack_nibbles(L, b.qs);
}

void encode_q5_k(const float* x, BlockQ5_K& b) {
  uint8_t L[kKBlock];
  encode_scale_min6(x, b, 31, -0.5f, 15, L);
  pack_bits(L, 4, b.qh);
  pack_nibbles(L, b.qs);
}

void encode_q6_k(const float* x, BlockQ6_K& b) {
  uint8_t L[kKBlock];
  float scale[kSub16];
  float amax = 0, max_scale = 0;
  for (int s = 0; s < kSub16; ++s) {
    scale[s] = fit_symmetric(16, 32, x + 16 * s, L + 16 * s);
    if (std::fabs(scale[s]) > amax) {
      amax = std::fabs(scale[s]);
      max_scale = scale[s];
    }
  }
  std::memset(&b, 0, sizeof b);
  if (amax < kZeroGroup) return;  // all zero (d = +0)
  // int8 sub-block scales against the largest magnitude (-128).
  const float iscale = -128.0f / max_scale;
  b.d = f32_to_fp16(1 / iscale);
  int sc[kSub16];
  for (int s = 0; s < kSub16; ++s) {
    const int v = nearest(iscale * scale[s]);
    b.scales[s] = int8_t(v < 127 ? v : 127);
    sc[s] = b.scales[s];
  }
  requantize_sym(x, 32, fp16_to_f32(b.d), sc, L);
  for (int h = 0; h < kKBlock; h += 128)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* q = L + h + l;
      b.ql[h / 2 + l] = uint8_t((q[0] & 15) | (q[64] & 15) << 4);
      b.ql[h / 2 + l + 32] = uint8_t((q[32] & 15) | (q[96] & 15) << 4);
      b.qh[h / 4 + l] =
          uint8_t(q[0] >> 4 | (q[32] >> 4) << 2 | (q[64] >> 4) << 4 | (q[96] >> 4) << 6);
    }
}

// ---- decoders ----------------------------------------------------------------------------

// One super-block decoded as value i = a[i/sub] * q[i] - m[i/sub] (sub = 256 / subs).
struct Decoded {
  int subs;
  float a[kSub16], m[kSub16];
  int q[kKBlock];
};

void decode(const BlockQ2_K& b, Decoded& o) {
  const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
  o.subs = kSub16;
  for (int s = 0; s < kSub16; ++s) {
    o.a[s] = d * float(b.scales[s] & 15);
    o.m[s] = dmin * float(b.scales[s] >> 4);
  }
  for (int i = 0; i < kKBlock; ++i) o.q[i] = unpack_2bit(b.qs, i);
}
void decode(const BlockQ3_K& b, Decoded& o) {
  const float d = fp16_to_f32(b.d);
  o.subs = kSub16;
  for (int s = 0; s < kSub16; ++s) {
    o.a[s] = d * float(unpack_scale6x16(b.scales, s) - 32);
    o.m[s] = 0;
  }
  for (int i = 0; i < kKBlock; ++i) o.q[i] = unpack_2bit(b.qs, i) + 4 * unpack_bit(b.hmask, i) - 4;
}
template <typename Block>
void decode_scale_min6(const Block& b, Decoded& o) {
  const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
  o.subs = kSub32;
  for (int s = 0; s < kSub32; ++s) {
    int sc, m;
    unpack_scale_min6(b.scales, s, sc, m);
    o.a[s] = d * float(sc);
    o.m[s] = dmin * float(m);
  }
}
void decode(const BlockQ4_K& b, Decoded& o) {
  decode_scale_min6(b, o);
  for (int i = 0; i < kKBlock; ++i) o.q[i] = unpack_nibble(b.qs, i);
}
void decode(const BlockQ5_K& b, Decoded& o) {
  decode_scale_min6(b, o);
  for (int i = 0; i < kKBlock; ++i) o.q[i] = unpack_nibble(b.qs, i) + 16 * unpack_bit(b.qh, i);
}
void decode(const BlockQ6_K& b, Decoded& o) {
  const float d = fp16_to_f32(b.d);
  o.subs = kSub16;
  for (int s = 0; s < kSub16; ++s) {
    o.a[s] = d * float(b.scales[s]);
    o.m[s] = 0;
  }
  for (int i = 0; i < kKBlock; ++i) {
    const int n = i / 128, r = (i % 128) / 32, l = i % 32;
    const int low = (b.ql[64 * n + 32 * (r % 2) + l] >> (r < 2 ? 0 : 4)) & 15;
    const int hi = (b.qh[32 * n + l] >> (2 * r)) & 3;
    o.q[i] = (low | hi << 4) - 32;
  }
}

template <typename Block>
void row_to_f32(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  Decoded dec;
  for (int64_t k = 0; k < n / kKBlock; ++k) {
    Block b;
    std::memcpy(&b, p + k * int64_t(sizeof b), sizeof b);
    decode(b, dec);
    const int sub = kKBlock / dec.subs;
    float* o = dst + k * kKBlock;
    for (int i = 0; i < kKBlock; ++i) {
      const float aq = dec.a[i / sub] * float(dec.q[i]);  // separate statement: no fused multiply-add
      o[i] = aq - dec.m[i / sub];
    }
  }
}

template <typename Block, void (*Encode)(const float*, Block&)>
void row_from_f32(const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t k = 0; k < n / kKBlock; ++k) {
    Block b{};
    Encode(src + k * kKBlock, b);
    std::memcpy(p + k * int64_t(sizeof b), &b, sizeof b);
  }
}

}  // namespace

namespace detail {

void q2_k_row_to_f32(const void* s, float* d, int64_t n) { row_to_f32<BlockQ2_K>(s, d, n); }
void q3_k_row_to_f32(const void* s, float* d, int64_t n) { row_to_f32<BlockQ3_K>(s, d, n); }
void q4_k_row_to_f32(const void* s, float* d, int64_t n) { row_to_f32<BlockQ4_K>(s, d, n); }
void q5_k_row_to_f32(const void* s, float* d, int64_t n) { row_to_f32<BlockQ5_K>(s, d, n); }
void q6_k_row_to_f32(const void* s, float* d, int64_t n) { row_to_f32<BlockQ6_K>(s, d, n); }
void q2_k_row_from_f32(const float* s, void* d, int64_t n) {
  row_from_f32<BlockQ2_K, &encode_q2_k>(s, d, n);
}
void q3_k_row_from_f32(const float* s, void* d, int64_t n) {
  row_from_f32<BlockQ3_K, &encode_q3_k>(s, d, n);
}
void q4_k_row_from_f32(const float* s, void* d, int64_t n) {
  row_from_f32<BlockQ4_K, &encode_q4_k>(s, d, n);
}
void q5_k_row_from_f32(const float* s, void* d, int64_t n) {
  row_from_f32<BlockQ5_K, &encode_q5_k>(s, d, n);
}
void q6_k_row_from_f32(const float* s, void* d, int64_t n) {
  row_from_f32<BlockQ6_K, &encode_q6_k>(s, d, n);
}

}  // namespace detail
}  // namespace tandem
