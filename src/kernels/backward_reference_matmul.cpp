// Plain scalar references (backward_reference.hpp) of the dense f32 products' gradients
// and of the output head fused with cross-entropy: one thread, every sum in double, each
// output rounded to f32 once.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/kernels/backward_reference.hpp"

namespace tandem::kernels::ref {

// dx [m][cols] = dy [m][rows] . w [rows][cols].
void matmul_dx(const float* w, int64_t rows, int64_t cols, const float* dy, int64_t m,
               float* dx, bool accumulate) {
  TD_CHECK(rows >= 0 && cols >= 0 && m >= 0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < cols; ++c) {
      double s = accumulate ? double(dx[i * cols + c]) : 0.0;
      for (int64_t r = 0; r < rows; ++r) s += double(dy[i * rows + r]) * w[r * cols + c];
      dx[i * cols + c] = float(s);
    }
}

// dw [rows][cols] += dy^T . x over the m tokens.
void matmul_dw(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
               float* dw) {
  TD_CHECK(rows >= 0 && cols >= 0 && m >= 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      double s = dw[r * cols + c];
      for (int64_t i = 0; i < m; ++i) s += double(dy[i * rows + r]) * x[i * cols + c];
      dw[r * cols + c] = float(s);
    }
}

// Token by token, all V logits at once, in double; dw's sums over tokens in a double
// buffer [V][D] added to dw at the end.
double cross_entropy(const CrossEntropyArgs& a) {
  TD_CHECK(a.m >= 0 && a.D >= 0 && a.V >= 1 && a.block_tokens >= 1);
  const int64_t m = a.m, D = a.D, V = a.V;
  std::vector<double> logit(static_cast<size_t>(V));
  std::vector<double> dwsum(a.dw ? static_cast<size_t>(V * D) : 0, 0.0);
  double loss = 0.0;
  int64_t correct = 0;
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = a.x + i * D;
    const int32_t t = a.target[i];
    if (t < 0) {
      if (a.dx) std::fill(a.dx + i * D, a.dx + (i + 1) * D, 0.0f);
      continue;
    }
    TD_CHECK(t < V);
    for (int64_t v = 0; v < V; ++v) {
      double s = 0.0;
      for (int64_t c = 0; c < D; ++c) s += double(xi[c]) * a.w[v * D + c];
      logit[size_t(v)] = s;
    }
    // The first maximum: the lowest id among ties.
    const int64_t best = std::max_element(logit.begin(), logit.end()) - logit.begin();
    if (best == t) ++correct;
    const double mx = logit[size_t(best)];
    double sum = 0.0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(logit[size_t(v)] - mx);
    const double lse = mx + std::log(sum);
    loss += lse - logit[size_t(t)];
    if (!a.dx && !a.dw) continue;
    // g[v] = (softmax - onehot) * grad_scale, reused in place of the logits.
    for (int64_t v = 0; v < V; ++v)
      logit[size_t(v)] = (std::exp(logit[size_t(v)] - lse) - (v == t ? 1.0 : 0.0)) *
                         double(a.grad_scale);
    if (a.dx)
      for (int64_t c = 0; c < D; ++c) {
        double s = 0.0;
        for (int64_t v = 0; v < V; ++v) s += logit[size_t(v)] * a.w[v * D + c];
        a.dx[i * D + c] = float(s);
      }
    if (a.dw)
      for (int64_t v = 0; v < V; ++v)
        for (int64_t c = 0; c < D; ++c) dwsum[size_t(v * D + c)] += logit[size_t(v)] * xi[c];
  }
  if (a.dw)
    for (int64_t k = 0; k < V * D; ++k) a.dw[k] = float(double(a.dw[k]) + dwsum[size_t(k)]);
  if (a.correct) *a.correct = correct;
  return loss;
}

}  // namespace tandem::kernels::ref
