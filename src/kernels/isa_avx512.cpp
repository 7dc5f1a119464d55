// The kernels of isa.hpp compiled for AVX-512 F, BW, VL and VNNI (with AVX2, FMA,
// F16C).
// GCC 12 warns inside its own AVX-512 intrinsics (their _mm512_undefined_* operands,
// GCC bug 105593; -Wuninitialized where one is inlined into a small function); the
// pragmas must precede <immintrin.h> to reach those lines.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
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
}  // namespace tandem::kernels::detail::avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace tandem::kernels::detail {
const IsaKernels& isa_avx512() { return avx512::kTable; }
}  // namespace tandem::kernels::detail

#else  // not x86: never selected (isa_supported says no)
namespace tandem::kernels::detail {
const IsaKernels& isa_avx512() { return isa_generic(); }
}  // namespace tandem::kernels::detail
#endif
