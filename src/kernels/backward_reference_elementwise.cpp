// Plain scalar references (backward_reference.hpp) of the elementwise and per-row backward
// ops and of the AdamW step: one thread, no SIMD, arithmetic in double, one rounding to
// float per value written. Shapes: m rows (N tokens), n or cols values per row (D model
// dim), heads x d per rope row.
#include <cmath>
#include <vector>

#include "tandem/kernels/backward_reference.hpp"

namespace tandem::kernels::ref {

void get_rows_backward(const int32_t* ids, int64_t m, const float* dy, int64_t cols,
                       float* dw) {
  // Rows in order, so repeated ids add up in token order.
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < cols; ++c) dw[ids[i] * cols + c] += dy[i * cols + c];
}

void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                      int64_t m, int64_t n, float eps) {
  std::vector<double> dw_sum(dw ? size_t(n) : 0);  // dw's sum over the rows, added once
  for (int64_t i = 0; i < m; ++i) {
    const float* xr = x + i * n;
    const float* g = dy + i * n;
    double ss = 0.0, dot = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      ss += double(xr[j]) * xr[j];
      dot += double(g[j]) * w[j] * xr[j];
    }
    const double r = 1.0 / std::sqrt(ss / double(n) + eps);
    const double k = r * r * r * dot / double(n);  // r * r^2 * mean(dy*w*x)
    // The row's values are read before dx (which may be dy) is written.
    for (int64_t j = 0; j < n; ++j) {
      const double gj = g[j], xj = xr[j];
      if (dw) dw_sum[size_t(j)] += gj * xj * r;
      dx[i * n + j] = float(r * gj * w[j] - xj * k);
    }
  }
  if (dw)
    for (int64_t j = 0; j < n; ++j) dw[j] = float(dw[j] + dw_sum[size_t(j)]);
}

void rope_backward(float* dx, int64_t m, int heads, int d, const RopeSpec& r,
                   const int32_t* pos) {
  // The forward maps (a, b) to (a c - b s, a s + b c); its transpose (the inverse) maps
  // (a, b) to (a c + b s, -a s + b c).
  const int half = r.n_rot / 2;
  const bool neox = r.style == RopeStyle::Neox;
  for (int64_t t = 0; t < m; ++t) {
    for (int h = 0; h < heads; ++h) {
      float* v = dx + (t * heads + h) * d;
      for (int i = 0; i < half; ++i) {
        const double theta = rope_angle(r, pos[t], i);
        const double c = std::cos(theta), s = std::sin(theta);
        const int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
        const double a = v[ia], b = v[ib];
        v[ia] = float(a * c + b * s);
        v[ib] = float(-a * s + b * c);
      }
    }
  }
}

void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate,
                     float* dup, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i], u = up[i], d = dout[i];  // read before either write
    const double s = 1.0 / (1.0 + std::exp(-g));       // sigmoid
    // silu = g s; silu' = s + g s (1 - s)
    dgate[i] = float(d * u * (s + g * s * (1.0 - s)));
    dup[i] = float(d * g * s);
  }
}

void adamw_step(float* p, const float* grad, float* m, float* v, int64_t n, const AdamW& h,
                int64_t step, float grad_scale) {
  const double b1 = h.beta1, b2 = h.beta2;
  const double bc1 = 1.0 - std::pow(b1, double(step));
  const double bc2 = 1.0 - std::pow(b2, double(step));
  for (int64_t i = 0; i < n; ++i) {
    const double g = double(grad[i]) * grad_scale;
    const double mi = b1 * m[i] + (1.0 - b1) * g;
    const double vi = b2 * v[i] + (1.0 - b2) * g * g;
    const double pi = p[i];
    const double u = (mi / bc1) / (std::sqrt(vi / bc2) + h.eps);
    m[i] = float(mi);
    v[i] = float(vi);
    p[i] = float(pi - double(h.lr) * (u + double(h.weight_decay) * pi));
  }
}

}  // namespace tandem::kernels::ref
