// The kernels of isa.hpp compiled for AVX2, FMA and F16C.
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
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
namespace tandem::kernels::detail::avx2 {
namespace {
constexpr const char* kIsaName = "avx2";
#include "kernels/simd_avx2.inc"
#include "kernels/kernel_body.inc"
}  // namespace
}  // namespace tandem::kernels::detail::avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace tandem::kernels::detail {
const IsaKernels& isa_avx2() { return avx2::kTable; }
}  // namespace tandem::kernels::detail

#else  // not x86: never selected (isa_supported says no)
namespace tandem::kernels::detail {
const IsaKernels& isa_avx2() { return isa_generic(); }
}  // namespace tandem::kernels::detail
#endif
