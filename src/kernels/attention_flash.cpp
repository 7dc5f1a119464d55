// Flash attention (attention_flash.hpp): the body is written once in
// attention_flash_body.inc and compiled per instruction set like isa_*.cpp; the set in
// use follows detail::isa().
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 intrinsics
#endif
#include "kernels/attention_flash.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <string_view>

#include "tandem/core/fp16.hpp"

namespace tandem::kernels::detail::flash_generic {
namespace {
#include "kernels/simd_generic.inc"
#include "kernels/attention_flash_body.inc"
}  // namespace
}  // namespace tandem::kernels::detail::flash_generic

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
namespace tandem::kernels::detail::flash_avx2 {
namespace {
#include "kernels/simd_avx2.inc"
#include "kernels/attention_flash_body.inc"
}  // namespace
}  // namespace tandem::kernels::detail::flash_avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(                                                   \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
#endif
namespace tandem::kernels::detail::flash_avx512 {
namespace {
#include "kernels/simd_avx512.inc"
#include "kernels/attention_flash_body.inc"
}  // namespace
}  // namespace tandem::kernels::detail::flash_avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#define TANDEM_FLASH_X86 1
#endif

namespace tandem::kernels::detail {

const FlashKernels& flash_kernels() {
#ifdef TANDEM_FLASH_X86
  const std::string_view name = isa().name;
  if (name == "avx512") return flash_avx512::kFlashTable;
  if (name == "avx2") return flash_avx2::kFlashTable;
#endif
  return flash_generic::kFlashTable;
}

}  // namespace tandem::kernels::detail
