// The row conversions live in core (tandem/core/quant_rows.hpp), the one definition
// of the GGUF block rules shared with the model writer; the kernels API forwards.
#include "tandem/kernels/quant.hpp"

#include "tandem/core/quant_rows.hpp"

namespace tandem::kernels {

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  tandem::dequantize_row(t, src, dst, n);
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  tandem::quantize_row(t, src, dst, n);
}

}  // namespace tandem::kernels
