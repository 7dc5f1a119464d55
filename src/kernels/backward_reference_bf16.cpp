// Plain scalar references of the BF16 products (bf16_matmul.hpp, namespace ref): one
// thread, no SIMD, every input rounded to BF16 with bf16_round, every sum in double, each
// output rounded to f32 once.
#include "tandem/core/error.hpp"
#include "tandem/kernels/bf16_matmul.hpp"

namespace tandem::kernels {
namespace ref {

void bf16_matmul(const float* w, int64_t rows, int64_t cols, const float* x, int64_t m,
                 float* y) {
  TD_CHECK(rows >= 0 && cols >= 0 && m >= 0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int64_t c = 0; c < cols; ++c)
        s += double(bf16_round(x[i * cols + c])) * double(bf16_round(w[r * cols + c]));
      y[i * rows + r] = float(s);
    }
}

void bf16_matmul_dx(const float* w, int64_t rows, int64_t cols, const float* dy, int64_t m,
                    float* dx, bool accumulate) {
  TD_CHECK(rows >= 0 && cols >= 0 && m >= 0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < cols; ++c) {
      double s = accumulate ? double(dx[i * cols + c]) : 0.0;
      for (int64_t r = 0; r < rows; ++r)
        s += double(bf16_round(dy[i * rows + r])) * double(bf16_round(w[r * cols + c]));
      dx[i * cols + c] = float(s);
    }
}

void bf16_matmul_dw(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
                    float* dw) {
  TD_CHECK(rows >= 0 && cols >= 0 && m >= 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      double s = dw[r * cols + c];
      for (int64_t i = 0; i < m; ++i)
        s += double(bf16_round(dy[i * rows + r])) * double(bf16_round(x[i * cols + c]));
      dw[r * cols + c] = float(s);
    }
}

}  // namespace ref
}  // namespace tandem::kernels
