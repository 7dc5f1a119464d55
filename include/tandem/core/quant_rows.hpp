#pragma once
// Scalar conversion of rows between f32 and the storage types (every type of the traits
// table with row conversions, dtype.hpp). This is the one definition of the quantization
// rules; the kernels module forwards to it, and the model writer (make-model) uses it
// directly.
#include <cstdint>

#include "tandem/core/dtype.hpp"

namespace tandem {

// dst[0..n) = the values of the n elements at src (n a multiple of the block size).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Encodes n f32 values into row_bytes(t, n) bytes at dst. F16/BF16 round to nearest
// even. With id = (d != 0 ? 1/d : 0), computed in f32:
//   Q8_0: per block amax = max|x|, d = amax/127, q = roundf(x*id); d stored as F16.
//   Q4_0: per block m = the value of largest magnitude (signed, the first one on a
//         tie), d = m / -8, q = min(15, int8_t(x*id + 8.5f)); d stored as F16.
// The rules of the further block types are documented with their conversions
// (src/core/quant_rows_*.cpp). These are the standard GGUF rules, so files quantized
// here match other writers.
// Throws Error(Internal) for a type without a row encoding (I8, I16, I32) or an n
// that is not a multiple of the block size.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

}  // namespace tandem
