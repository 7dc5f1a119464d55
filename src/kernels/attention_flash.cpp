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

#define TANDEM_PER_ISA_BODY "kernels/attention_flash_body.inc"
#define TANDEM_PER_ISA_PREFIX flash
#include "kernels/per_isa.inc"

namespace tandem::kernels::detail {

const FlashKernels& flash_kernels() {
#ifdef TANDEM_PER_ISA_X86
  const std::string_view name = isa().name;
  if (name == "avx512") return flash_avx512::kFlashTable;
  if (name == "avx2") return flash_avx2::kFlashTable;
#endif
  return flash_generic::kFlashTable;
}

}  // namespace tandem::kernels::detail
