#pragma once
// Plain scalar references of every op in ops.hpp (same contracts, no pool, no SIMD).
// They define correctness; the optimized ops are tested against them.
#include "tandem/kernels/ops.hpp"

namespace tandem::kernels::ref {

void matmul(const Weight& w, const float* x, int64_t m, float* y, const float* bias = nullptr);
void get_rows(const Weight& w, const int32_t* ids, int64_t m, float* out);
void rmsnorm(const float* x, const float* w, float* y, int64_t m, int64_t n, float eps);
void rope(float* x, int64_t m, int heads, int d, const RopeSpec& r, const int32_t* pos);
void swiglu(const float* gate, const float* up, float* out, int64_t n);
void geglu(const float* gate, const float* up, float* out, int64_t n);
void softcap(const float* x, float* y, int64_t n, float cap);
void scale(float* x, int64_t n, float s);
void add(float* y, const float* x, int64_t n);
void attention(const AttentionArgs& a);

}  // namespace tandem::kernels::ref
