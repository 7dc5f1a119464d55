// get_rows, rmsnorm, rope, geglu, softcap, scale and add: cheap next to matmul and
// attention, so plain loops the compiler vectorizes (several partial sums where order
// matters); swiglu uses the vector exp of the instruction-set kernels.
#include <algorithm>
#include <cmath>
#include <functional>

#include "kernels/isa.hpp"
#include "tandem/core/error.hpp"
#include "tandem/kernels/fused.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/quant.hpp"

namespace tandem::kernels {
namespace {

constexpr int kLanes = 16;  // partial sums for reductions

float sum_squares(const float* x, int64_t n) {
  float part[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int k = 0; k < kLanes; ++k) part[k] += x[c + k] * x[c + k];
  double s = 0.0;
  for (int k = 0; k < kLanes; ++k) s += part[k];
  for (; c < n; ++c) s += double(x[c]) * x[c];
  return float(s);
}

// cos and sin of the angles of pairs [i0, i0 + np) at position p.
void rope_angles(const RopeSpec& r, int32_t p, int i0, int np, float* c, float* s) {
  for (int i = 0; i < np; ++i) {
    const double theta = rope_angle(r, p, i0 + i);
    c[i] = float(std::cos(theta));
    s[i] = float(std::sin(theta));
  }
}

// Rotates pairs [i0, i0 + np) of every head of one token's row x [heads][d]: pair i joins
// dims (2i, 2i + 1) (Adjacent) or (i, i + half) (Neox).
void rotate_pairs(float* x, int heads, int d, RopeStyle style, int half, int i0, int np,
                  const float* c, const float* s) {
  const int64_t step = style == RopeStyle::Neox ? 1 : 2;
  const int64_t other = style == RopeStyle::Neox ? half : 1;
  for (int h = 0; h < heads; ++h) {
    float* v = x + int64_t(h) * d + step * i0;
    for (int i = 0; i < np; ++i) {
      float* a = v + step * i;
      const float a0 = a[0], a1 = a[other];
      a[0] = a0 * c[i] - a1 * s[i];
      a[other] = a0 * s[i] + a1 * c[i];
    }
  }
}

constexpr int kMaxPairs = 128;

// Runs fn(begin, end) over parts of [0, n) on the pool, or inline when small.
template <typename Fn>
void parallel_rows(ThreadPool& pool, int64_t n, int64_t work, Fn&& fn) {
  if (pool.size() == 1 || n == 1 || work < (int64_t(1) << 15)) {
    fn(int64_t(0), n);
    return;
  }
  auto body = [&](int tid, int nth) {
    const auto [b, e] = split_range(n, tid, nth);
    if (b < e) fn(b, e);
  };
  pool.run(std::cref(body));
}

}  // namespace

namespace detail {

void rmsnorm_row(const float* x, const float* w, float* y, int64_t n, float eps) {
  const float inv = float(1.0 / std::sqrt(double(sum_squares(x, n)) / double(n) + eps));
  for (int64_t c = 0; c < n; ++c) y[c] = x[c] * inv * w[c];
}

}  // namespace detail

void get_rows(const Weight& w, const int32_t* ids, int64_t m, float* out) {
  const auto* data = static_cast<const uint8_t*>(w.data);
  for (int64_t i = 0; i < m; ++i) {
    TD_CHECK(ids[i] >= 0 && ids[i] < w.rows);
    dequantize_row(w.type, data + size_t(ids[i]) * w.row_stride, out + i * w.cols, w.cols);
  }
}

void rmsnorm(const float* x, const float* w, float* y, int64_t m, int64_t n, float eps,
             ThreadPool& pool) {
  TD_CHECK(n > 0 && m >= 0);
  parallel_rows(pool, m, m * n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) detail::rmsnorm_row(x + i * n, w, y + i * n, n, eps);
  });
}

double rope_angle(const RopeSpec& r, int32_t p, int i) {
  double theta = double(p) * double(r.freq_scale) *
                 std::pow(double(r.freq_base), -2.0 * i / r.n_rot);
  if (r.freq_factors) theta /= double(r.freq_factors[i]);
  return theta;
}

void rope(float* x, int64_t m, int heads, int d, const RopeSpec& r, const int32_t* pos,
          ThreadPool& pool) {
  TD_CHECK(r.n_rot >= 0 && r.n_rot <= d && r.n_rot % 2 == 0 && heads > 0);
  const int half = r.n_rot / 2;
  parallel_rows(pool, m, m * heads * r.n_rot, [&](int64_t b, int64_t e) {
    float c[kMaxPairs], s[kMaxPairs];
    for (int64_t t = b; t < e; ++t) {
      for (int i0 = 0; i0 < half; i0 += kMaxPairs) {
        const int np = std::min(kMaxPairs, half - i0);
        rope_angles(r, pos[t], i0, np, c, s);
        rotate_pairs(x + t * int64_t(heads) * d, heads, d, r.style, half, i0, np, c, s);
      }
    }
  });
}

void RopeTable::build(const int32_t* pos, int64_t rows, const RopeSpec& r) {
  TD_CHECK(r.n_rot >= 0 && r.n_rot % 2 == 0 && rows >= 0);
  m = rows;
  n_rot = r.n_rot;
  const int half = r.n_rot / 2;
  cos.resize(size_t(rows * half));
  sin.resize(size_t(rows * half));
  for (int64_t t = 0; t < rows; ++t)
    rope_angles(r, pos[t], 0, half, cos.data() + t * half, sin.data() + t * half);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  detail::isa().swiglu(gate, up, out, n);
}

void geglu(const float* gate, const float* up, float* out, int64_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * g * (1.0f + 0.044715f * g * g))) * up[i];
  }
}

void softcap(const float* x, float* y, int64_t n, float cap) {
  const float inv = 1.0f / cap;
  for (int64_t i = 0; i < n; ++i) y[i] = cap * std::tanh(x[i] * inv);
}

void scale(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace tandem::kernels
