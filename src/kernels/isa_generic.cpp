// The kernels of isa.hpp compiled for any CPU (scalar code).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/core/fp16.hpp"

namespace tandem::kernels::detail::generic {
namespace {
constexpr const char* kIsaName = "generic";
#include "kernels/simd_generic.inc"
#include "kernels/kernel_body.inc"
}  // namespace
}  // namespace tandem::kernels::detail::generic

namespace tandem::kernels::detail {
const IsaKernels& isa_generic() { return generic::kTable; }
}  // namespace tandem::kernels::detail
