// The kernels of isa.hpp compiled for AVX-512 F, BW, VL and VNNI (with AVX2, FMA,
// F16C).
// GCC 12 warns inside its own AVX-512 intrinsics (their _mm512_undefined_* operands,
// GCC bug 105593); the pragma must precede <immintrin.h> to reach those lines.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/core/fp16.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

// Only code in this region uses the extra instructions; it has internal linkage, so no
// inline function shared with other files is ever emitted with them.
#if defined(__clang__)
#pragma clang attribute push(                                                   \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
#endif
namespace tandem::kernels::detail::avx512 {
namespace {
constexpr const char* kIsaName = "avx512";
#include "kernels/simd_avx512.inc"
#include "kernels/kernel_body.inc"
}  // namespace

// quantize_x's kQxPairs layout, as its scalar code (the same d, q and corr).
void quantize_pairs(bool q4, const float* x, int64_t cols, uint8_t* out) {
  const int64_t nb = cols / kQBlock;
  const int32_t k = q4 ? 8 : 128;
  auto* pairs = reinterpret_cast<QxPair*>(out);
  for (int64_t b = 0; b < nb; b += 2) {
    QxPair& p = pairs[b / 2];
    float d[2] = {0.0f, 0.0f};
    int32_t corr[2] = {0, 0};
    __m128i q[2][2];
    for (int h = 0; h < 2; ++h) {
      if (b + h >= nb) {
        q[h][0] = q[h][1] = _mm_setzero_si128();
        continue;
      }
      const float* xb = x + (b + h) * kQBlock;
      const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
      d[h] = amax / 127.0f;
      const __m512 id = _mm512_set1_ps(d[h] != 0.0f ? 1.0f / d[h] : 0.0f);
      const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, id));  // nearest, ties even
      const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, id));
      corr[h] = -k * _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
      q[h][0] = _mm512_cvtepi32_epi8(i0);
      q[h][1] = _mm512_cvtepi32_epi8(i1);
    }
    for (int h = 0; h < 2; ++h)
      for (int c = 0; c < 2; ++c)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p.q + (q4 ? 16 * (2 * c + h) : 32 * h + 16 * c)),
                         q[h][c]);
    _mm512_storeu_ps(p.d, _mm512_mask_blend_ps(q4 ? 0xF0F0 : 0xFF00, _mm512_set1_ps(d[0]),
                                               _mm512_set1_ps(d[1])));
    alignas(64) int32_t cv[16] = {};
    cv[0] = corr[0];
    cv[q4 ? 4 : 8] = corr[1];
    _mm512_storeu_si512(p.corr, _mm512_load_si512(cv));
  }
}
}  // namespace tandem::kernels::detail::avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace tandem::kernels::detail {
const IsaKernels& isa_avx512() { return avx512::kTable; }
bool quantize_x_pairs_avx512(bool q4, const float* x, int64_t cols, uint8_t* out) {
  avx512::quantize_pairs(q4, x, cols, out);
  return true;
}
}  // namespace tandem::kernels::detail

#else  // not x86: never selected (isa_supported says no)
namespace tandem::kernels::detail {
const IsaKernels& isa_avx512() { return isa_generic(); }
bool quantize_x_pairs_avx512(bool, const float*, int64_t, uint8_t*) { return false; }
}  // namespace tandem::kernels::detail
#endif
