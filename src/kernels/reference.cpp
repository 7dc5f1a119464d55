#include "tandem/kernels/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/kernels/quant.hpp"

namespace tandem::kernels::ref {
namespace {

std::vector<float> weight_row(const Weight& w, int64_t r) {
  std::vector<float> row(size_t(w.cols));
  dequantize_row(w.type, static_cast<const uint8_t*>(w.data) + size_t(r) * w.row_stride,
                 row.data(), w.cols);
  return row;
}

}  // namespace

void matmul(const Weight& w, const float* x, int64_t m, float* y, const float* bias) {
  for (int64_t r = 0; r < w.rows; ++r) {
    const std::vector<float> row = weight_row(w, r);
    for (int64_t i = 0; i < m; ++i) {
      double s = bias ? bias[r] : 0.0;
      for (int64_t c = 0; c < w.cols; ++c) s += double(row[size_t(c)]) * x[i * w.cols + c];
      y[i * w.rows + r] = float(s);
    }
  }
}

void get_rows(const Weight& w, const int32_t* ids, int64_t m, float* out) {
  for (int64_t i = 0; i < m; ++i) {
    TD_CHECK(ids[i] >= 0 && ids[i] < w.rows);
    const std::vector<float> row = weight_row(w, ids[i]);
    for (int64_t c = 0; c < w.cols; ++c) out[i * w.cols + c] = row[size_t(c)];
  }
}

void rmsnorm(const float* x, const float* w, float* y, int64_t m, int64_t n, float eps) {
  for (int64_t i = 0; i < m; ++i) {
    double ss = 0.0;
    for (int64_t c = 0; c < n; ++c) ss += double(x[i * n + c]) * x[i * n + c];
    const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
    for (int64_t c = 0; c < n; ++c) y[i * n + c] = float(x[i * n + c] * inv * w[c]);
  }
}

void rope(float* x, int64_t m, int heads, int d, const RopeSpec& r, const int32_t* pos) {
  const int half = r.n_rot / 2;
  // Pair i joins dims (a(i), b(i)) of a head.
  const bool neox = r.style == RopeStyle::Neox;
  for (int64_t t = 0; t < m; ++t) {
    for (int h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * d;
      for (int i = 0; i < half; ++i) {
        double theta = double(pos[t]) * double(r.freq_scale) *
                       std::pow(double(r.freq_base), -2.0 * i / r.n_rot);
        if (r.freq_factors) theta /= double(r.freq_factors[i]);
        const double c = std::cos(theta), s = std::sin(theta);
        const int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
        const double a = v[ia], b = v[ib];
        v[ia] = float(a * c - b * s);
        v[ib] = float(a * s + b * c);
      }
    }
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = float(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void geglu(const float* gate, const float* up, float* out, int64_t n) {
  const double k = std::sqrt(2.0 / 3.14159265358979323846);
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = float(0.5 * g * (1.0 + std::tanh(k * (g + 0.044715 * g * g * g))) * up[i]);
  }
}

void softcap(const float* x, float* y, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) y[i] = float(double(cap) * std::tanh(double(x[i]) / cap));
}

void scale(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] = float(double(x[i]) * s);
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void attention(const AttentionArgs& args) {
  KvGather gathered;
  const AttentionArgs a = gather_kv(args, gathered);
  TD_CHECK(a.G > 0 && a.H % a.G == 0 && a.d > 0 && a.kv_stride >= int64_t(a.G) * a.d);
  const int group = a.H / a.G;
  std::vector<double> score(size_t(a.n_kv));
  std::vector<char> visible(size_t(a.n_kv));
  for (int64_t i = 0; i < a.n_q; ++i) {
    for (int h = 0; h < a.H; ++h) {
      const float* q = a.q + (i * a.H + h) * a.d;
      float* out = a.out + (i * a.H + h) * a.d;
      const int64_t kv_off = int64_t(h / group) * a.d;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < a.n_kv; ++j) {
        const int64_t behind = a.causal ? int64_t(a.q_pos[i]) - a.kv_pos[j] : 0;
        visible[size_t(j)] = behind >= 0 && (a.window <= 0 || behind < a.window);
        if (!visible[size_t(j)]) continue;
        const float* k = a.k + j * a.kv_stride + kv_off;
        double s = 0.0;
        for (int c = 0; c < a.d; ++c) s += double(q[c]) * k[c];
        s *= a.scale;
        if (a.softcap > 0.0f) s = a.softcap * std::tanh(s / a.softcap);
        score[size_t(j)] = s;
        mx = std::max(mx, score[size_t(j)]);
      }
      std::vector<double> acc(size_t(a.d), 0.0);
      double sum = 0.0;
      for (int64_t j = 0; j < a.n_kv; ++j) {
        if (!visible[size_t(j)]) continue;
        const double p = std::exp(score[size_t(j)] - mx);
        sum += p;
        const float* v = a.v + j * a.kv_stride + kv_off;
        for (int c = 0; c < a.d; ++c) acc[size_t(c)] += p * v[c];
      }
      for (int c = 0; c < a.d; ++c) out[c] = sum > 0.0 ? float(acc[size_t(c)] / sum) : 0.0f;
      if (a.lse)
        a.lse[i * a.H + h] =
            sum > 0.0 ? float(mx + std::log(sum)) : -std::numeric_limits<float>::infinity();
    }
  }
}

}  // namespace tandem::kernels::ref
