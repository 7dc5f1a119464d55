#pragma once
// Private to core: the row conversions of each type (quant_rows.cpp), referenced by the
// traits table (dtype.cpp). Signatures as RowToF32 / RowFromF32 of dtype.hpp.
#include <cstdint>

namespace tandem::detail {

void f32_row_to_f32(const void* src, float* dst, int64_t n);
void f32_row_from_f32(const float* src, void* dst, int64_t n);
void f16_row_to_f32(const void* src, float* dst, int64_t n);
void f16_row_from_f32(const float* src, void* dst, int64_t n);
void bf16_row_to_f32(const void* src, float* dst, int64_t n);
void bf16_row_from_f32(const float* src, void* dst, int64_t n);
void q8_0_row_to_f32(const void* src, float* dst, int64_t n);
void q8_0_row_from_f32(const float* src, void* dst, int64_t n);
void q4_0_row_to_f32(const void* src, float* dst, int64_t n);
void q4_0_row_from_f32(const float* src, void* dst, int64_t n);

// Blocks of 32 (quant_rows_legacy.cpp).
void q4_1_row_to_f32(const void* src, float* dst, int64_t n);
void q4_1_row_from_f32(const float* src, void* dst, int64_t n);
void q5_0_row_to_f32(const void* src, float* dst, int64_t n);
void q5_0_row_from_f32(const float* src, void* dst, int64_t n);
void q5_1_row_to_f32(const void* src, float* dst, int64_t n);
void q5_1_row_from_f32(const float* src, void* dst, int64_t n);
void iq4_nl_row_to_f32(const void* src, float* dst, int64_t n);
void iq4_nl_row_from_f32(const float* src, void* dst, int64_t n);

// K-quants (quant_rows_k.cpp).
void q2_k_row_to_f32(const void* src, float* dst, int64_t n);
void q2_k_row_from_f32(const float* src, void* dst, int64_t n);
void q3_k_row_to_f32(const void* src, float* dst, int64_t n);
void q3_k_row_from_f32(const float* src, void* dst, int64_t n);
void q4_k_row_to_f32(const void* src, float* dst, int64_t n);
void q4_k_row_from_f32(const float* src, void* dst, int64_t n);
void q5_k_row_to_f32(const void* src, float* dst, int64_t n);
void q5_k_row_from_f32(const float* src, void* dst, int64_t n);
void q6_k_row_to_f32(const void* src, float* dst, int64_t n);
void q6_k_row_from_f32(const float* src, void* dst, int64_t n);

}  // namespace tandem::detail
