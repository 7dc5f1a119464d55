// The BF16 products on AVX-512 BF16 (bf16_matmul.hpp, private: layouts and blocking):
// packing of weights and activations into pairs of BF16 values (VCVTNE2PS2BF16: round to
// nearest even) and the VDPBF16PS micro-kernel. Compiled with the extra instructions for
// this file's region alone; its functions have internal linkage and run only where
// bf16_matmul.cpp found the instructions (cpuid).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 intrinsics
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/bf16_matmul.hpp"
#include "tandem/core/aligned_scratch.hpp"
#include "tandem/core/error.hpp"

#if defined(__x86_64__)
#include <immintrin.h>

namespace tandem::kernels::detail {
namespace {

// Per-thread buffers (64-byte aligned, grown as needed, kept for the thread's life):
// slot 0 the A block, slot 1 matmul_dw's packed x.
uint32_t* bf16_scratch(int slot, size_t words) {
  thread_local AlignedScratch s[2];
  return static_cast<uint32_t*>(s[slot].get(words * sizeof(uint32_t)));
}

}  // namespace
}  // namespace tandem::kernels::detail

#if defined(__clang__)
#pragma clang attribute push(                                                            \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")
#endif
namespace tandem::kernels::detail {
namespace {

constexpr int MR = kBf16MR, NV = kBf16NV, NR = kBf16NR;
static_assert(NR == 16 * NV && MR == 8);

// The first n (clamped to 0..16) lanes.
inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

inline __m512i as_int(__m512bh v) { return reinterpret_cast<__m512i&>(v); }
inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh&>(v); }

// Values p[0..31] (those past n read as zeros) as 16 pairs in order: pair j =
// (p[2j], p[2j+1]). Masked-off lanes are never read.
inline __m512i pairs_of_row(const float* p, int64_t n) {
  const __m512 lo = _mm512_maskz_loadu_ps(mask16(n), p);
  const __m512 hi = _mm512_maskz_loadu_ps(mask16(n - 16), p + 16);
  return as_int(_mm512_cvtne2ps_pbh(hi, lo));  // the low 16 words from the second operand
}

// 16 pairs (r0[j], r1[j]) for j < 16: values past n, and all of r1 when it is null, are
// zeros.
inline __m512i interleave(const float* r0, const float* r1, int64_t n) {
  alignas(64) static constexpr uint16_t kIdx[32] = {0,  16, 1,  17, 2,  18, 3,  19, 4,  20, 5,
                                                    21, 6,  22, 7,  23, 8,  24, 9,  25, 10, 26,
                                                    11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __mmask16 k = mask16(n);
  const __m512 a = _mm512_maskz_loadu_ps(k, r0);
  const __m512 b = r1 ? _mm512_maskz_loadu_ps(k, r1) : _mm512_setzero_ps();
  const __m512i v = as_int(_mm512_cvtne2ps_pbh(b, a));  // words 0..15 of a, 16..31 of b
  return _mm512_permutexvar_epi16(_mm512_load_si512(kIdx), v);
}

// r[i][j] becomes r[j][i] (16 x 16 uint32).
inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // u[4g + e], 128-bit lane l: rows 4g..4g+3 of column 4l + e.
  for (int g = 0; g < 16; g += 4) {
    u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
    u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
    u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
    u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
  }
  for (int e = 0; e < 4; ++e) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x88);   // lanes 0, 2
    const __m512i v1 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xDD);   // lanes 1, 3
    const __m512i w0 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x88);
    const __m512i w1 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xDD);
    r[e] = _mm512_shuffle_i32x4(v0, w0, 0x88);
    r[8 + e] = _mm512_shuffle_i32x4(v0, w0, 0xDD);
    r[4 + e] = _mm512_shuffle_i32x4(v1, w1, 0x88);
    r[12 + e] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
  }
}

// Forward layout, panels [p0, p1): column r of panel P is weight row P*NR + r; pair p is
// (w[r][2p], w[r][2p+1]). Sixteen rows by sixteen pairs at a time, transposed.
void pack_forward(const float* w, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                  uint32_t* out) {
  const int64_t kp = bf16_pairs(cols);
  for (int64_t P = p0; P < p1; ++P) {
    uint32_t* o = out + P * kp * NR;
    for (int j0 = 0; j0 < NR; j0 += 16)
      for (int64_t pc = 0; pc < kp; pc += 16) {
        __m512i v[16];
        for (int j = 0; j < 16; ++j) {
          const int64_t r = P * NR + j0 + j;
          v[j] = r < rows ? pairs_of_row(w + r * cols + 2 * pc, cols - 2 * pc)
                          : _mm512_setzero_si512();
        }
        transpose16(v);
        for (int q = 0; q < 16 && pc + q < kp; ++q)
          _mm512_storeu_si512(o + (pc + q) * NR + j0, v[q]);
      }
  }
}

// dx layout, panels [p0, p1): column c of panel P is weight column P*NR + c; pair p is
// (w[2p][c], w[2p+1][c]).
void pack_dx(const float* w, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
             uint32_t* out) {
  const int64_t kp = bf16_pairs(rows);
  for (int64_t P = p0; P < p1; ++P)
    for (int64_t p = 0; p < kp; ++p) {
      const float* r0 = w + 2 * p * cols;
      const float* r1 = 2 * p + 1 < rows ? r0 + cols : nullptr;
      uint32_t* o = out + (P * kp + p) * NR;
      for (int v = 0; v < NV; ++v) {
        const int64_t c = P * NR + 16 * v;
        _mm512_storeu_si512(o + 16 * v,
                            interleave(r0 + c, r1 ? r1 + c : nullptr, cols - c));
      }
    }
}

// C[i][0..ncols) (+)= sum_p A(i, p) . b[p][..] over kc pairs for i < mr (rows of A past
// mr are zeros or ignored: their sums are not stored). A is read from a:
//   kRowsA true:  rows lda uint32 apart, A(i, p) = a[i*lda + p] (the rows products);
//   kRowsA false: a group panel, A(i, p) = a[p*MR + i] (matmul_dw).
// b: a panel, pair p at b + p*NR. C row i at c + i*ldc. load: add to C (else overwrite).
// next: the C tile of the next call, fetched into cache during the first steps.
template <bool kRowsA>
void tile(int64_t kc, const uint32_t* a, int64_t lda, const uint32_t* b, float* c,
          int64_t ldc, int mr, int64_t ncols, bool load, const float* next) {
  __mmask16 km[NV];
  for (int v = 0; v < NV; ++v) km[v] = mask16(ncols - 16 * v);
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v)
      acc[i][v] = load && i < mr ? _mm512_maskz_loadu_ps(km[v], c + i * ldc + 16 * v)
                                 : _mm512_setzero_ps();
  auto step = [&](int64_t p) {
    __m512bh bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = as_bh(_mm512_loadu_si512(b + p * NR + 16 * v));
    for (int i = 0; i < MR; ++i) {
      const __m512bh av =
          as_bh(_mm512_set1_epi32(int(kRowsA ? a[i * lda + p] : a[p * MR + i])));
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, bv[v]);
    }
  };
  const int64_t kpre = std::min<int64_t>(kc, MR);
  int64_t p = 0;
  for (; p < kpre; ++p) {
    for (int v = 0; v < NR; v += 16) __builtin_prefetch(next + p * ldc + v, 1);
    step(p);
  }
  for (; p < kc; ++p) step(p);
  for (int i = 0; i < mr; ++i)
    for (int v = 0; v < NV; ++v)
      if (km[v]) _mm512_mask_storeu_ps(c + i * ldc + 16 * v, km[v], acc[i][v]);
}

// Rows [tb, te) of a (f32, [..][K]) as BF16 pairs [kb, kb + kc) into ap [rows][kc],
// then zero rows up to a multiple of MR.
void pack_rows(const float* a, int64_t K, int64_t tb, int64_t te, int64_t kb, int64_t kc,
               uint32_t* ap) {
  const int64_t nt = te - tb, npad = (nt + MR - 1) / MR * MR;
  for (int64_t t = 0; t < npad; ++t) {
    uint32_t* o = ap + t * kc;
    if (t >= nt) {
      std::memset(o, 0, size_t(kc) * 4);
      continue;
    }
    const float* row = a + (tb + t) * K + 2 * kb;
    const int64_t left = K - 2 * kb;
    for (int64_t q = 0; q < kc; q += 16)
      _mm512_mask_storeu_epi32(o + q, mask16(kc - q), pairs_of_row(row + 2 * q, left - 2 * q));
  }
}

void rows_part(const float* a, int64_t K, const uint32_t* b, int64_t N, float* c, int64_t t0,
               int64_t t1, int64_t p0, int64_t p1, bool accumulate) {
  const int64_t kp = bf16_pairs(K);
  if (kp == 0) {
    if (!accumulate)
      for (int64_t t = t0; t < t1; ++t)
        std::fill(c + t * N + p0 * NR, c + t * N + std::min(N, p1 * NR), 0.0f);
    return;
  }
  const auto [kKcp, kMc] = bf16_blocking(kp);
  uint32_t* ap = bf16_scratch(0, size_t(kMc * kKcp));
  for (int64_t kb = 0; kb < kp; kb += kKcp) {
    const int64_t kc = std::min(kKcp, kp - kb);
    const bool load = accumulate || kb > 0;
    for (int64_t tb = t0; tb < t1; tb += kMc) {
      const int64_t nt = std::min(t1, tb + kMc) - tb;
      pack_rows(a, K, tb, tb + nt, kb, kc, ap);
      for (int64_t P = p0; P < p1; ++P) {
        const uint32_t* bp = b + (P * kp + kb) * NR;
        const int64_t col = P * NR, ncols = std::min<int64_t>(NR, N - col);
        for (int64_t g = 0; g < nt; g += MR) {
          float* ct = c + (tb + g) * N + col;
          const float* next = g + MR < nt ? ct + MR * N : c + tb * N + col + NR;
          tile<true>(kc, ap + g * kc, kc, bp, ct, N, int(std::min<int64_t>(MR, nt - g)), ncols,
                     load, next);
        }
      }
    }
  }
}

void dw_part(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
             int64_t r0, int64_t r1, int64_t p0, int64_t p1, float* dw) {
  const int64_t kp = bf16_pairs(m);
  if (kp == 0 || r0 >= r1 || p0 >= p1) return;
  const auto [kKcp, kMc] = bf16_blocking(kp);
  uint32_t* bp = bf16_scratch(1, size_t((p1 - p0) * kKcp * NR));
  uint32_t* ap = bf16_scratch(0, size_t(kMc * kKcp));
  for (int64_t kb = 0; kb < kp; kb += kKcp) {
    const int64_t kc = std::min(kKcp, kp - kb);
    // x, tokens 2(kb+p) and 2(kb+p)+1, for this part's panels: [panel][kc][NR].
    for (int64_t P = p0; P < p1; ++P)
      for (int64_t p = 0; p < kc; ++p) {
        const int64_t t = 2 * (kb + p);
        const float* x0 = x + t * cols;
        const float* x1 = t + 1 < m ? x0 + cols : nullptr;
        uint32_t* o = bp + ((P - p0) * kc + p) * NR;
        for (int v = 0; v < NV; ++v) {
          const int64_t col = P * NR + 16 * v;
          _mm512_storeu_si512(o + 16 * v, interleave(x0 + col, x1 ? x1 + col : nullptr, cols - col));
        }
      }
    for (int64_t ib = r0; ib < r1; ib += kMc) {
      const int64_t mc = std::min(kMc, r1 - ib), groups = (mc + MR - 1) / MR;
      // dy^T for rows [ib, ib + mc): group g at ap + g*kc*MR, [kc][MR] (zeros past mc).
      for (int64_t p = 0; p < kc; ++p) {
        const int64_t t = 2 * (kb + p);
        const float* d0 = dy + t * rows + ib;
        const float* d1 = t + 1 < m ? d0 + rows : nullptr;
        for (int64_t q = 0; q < groups * MR; q += 16) {
          const __m512i v = interleave(d0 + q, d1 ? d1 + q : nullptr, mc - q);
          const int64_t g = q / MR;
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(ap + (g * kc + p) * MR),
                              _mm512_castsi512_si256(v));
          if (g + 1 < groups)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(ap + ((g + 1) * kc + p) * MR),
                                _mm512_extracti64x4_epi64(v, 1));
        }
      }
      for (int64_t P = p0; P < p1; ++P) {
        const int64_t col = P * NR, ncols = std::min<int64_t>(NR, cols - col);
        const uint32_t* b = bp + (P - p0) * kc * NR;
        for (int64_t g = 0; g < groups; ++g) {
          float* ct = dw + (ib + g * MR) * cols + col;
          const float* next = g + 1 < groups ? ct + MR * cols : dw + ib * cols + col + NR;
          tile<false>(kc, ap + g * kc * MR, MR, b, ct, cols,
                      int(std::min<int64_t>(MR, mc - g * MR)), ncols, true, next);
        }
      }
    }
  }
}

constexpr Bf16FastKernels kFast{&pack_forward, &pack_dx, &rows_part, &dw_part};

}  // namespace
}  // namespace tandem::kernels::detail
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace tandem::kernels::detail {
const Bf16FastKernels* bf16_fast_kernels() { return &kFast; }
}  // namespace tandem::kernels::detail

#else  // not x86-64: the portable path only

namespace tandem::kernels::detail {
const Bf16FastKernels* bf16_fast_kernels() { return nullptr; }
}  // namespace tandem::kernels::detail

#endif
