#pragma once
// Plain scalar references of the ops in backward.hpp: same contracts, one thread, no SIMD,
// sums in double where the op reduces. They define correctness: tests check them against
// central finite differences of the forward references in float64, and the optimized ops
// against them.
#include "tandem/kernels/backward.hpp"

namespace tandem::kernels::ref {

void matmul_dx(const float* w, int64_t rows, int64_t cols, const float* dy, int64_t m,
               float* dx, bool accumulate);
void matmul_dw(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
               float* dw);
void get_rows_backward(const int32_t* ids, int64_t m, const float* dy, int64_t cols, float* dw);
void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                      int64_t m, int64_t n, float eps);
void rope_backward(float* dx, int64_t m, int heads, int d, const RopeSpec& r,
                   const int32_t* pos);
void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate,
                     float* dup, int64_t n);
double cross_entropy(const CrossEntropyArgs& a);
void attention_backward(const AttentionBackwardArgs& a);
void adamw_step(float* p, const float* grad, float* m, float* v, int64_t n, const AdamW& h,
                int64_t step, float grad_scale);

}  // namespace tandem::kernels::ref
