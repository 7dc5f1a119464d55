#pragma once
// Conversion of rows between f32 and the storage types (tandem/core/quant_rows.hpp).
#include <cstdint>

#include "tandem/core/dtype.hpp"

namespace tandem::kernels {

// dst[0..n) = values of the n elements at src (n a multiple of the block size).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Encodes n f32 values into row_bytes(t, n) bytes at dst. F16/BF16 round to nearest
// even. With id = (d != 0 ? 1/d : 0), computed in f32:
//   Q8_0: per block amax = max|x|, d = amax/127, q = roundf(x*id); d stored as F16.
//   Q4_0: per block m = the value of largest magnitude (signed), d = m / -8,
//         q = min(15, int8_t(x*id + 8.5f)); d stored as F16.
// These are the standard GGUF rules, so files quantized here match other writers.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

}  // namespace tandem::kernels
