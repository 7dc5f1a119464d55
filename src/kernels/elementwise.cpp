// get_rows, rmsnorm, rope and add: cheap next to matmul and attention, so plain loops
// the compiler vectorizes (several partial sums where order matters); swiglu uses the
// vector exp of the instruction-set kernels.
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

// cos and sin of the angles of pairs [i0, i0 + np) at position p. The angle is formed in
// double (as the reference does) so large positions keep their precision.
void rope_angles(int32_t p, int i0, int np, int n_rot, float freq_base, float* c, float* s) {
  for (int i = 0; i < np; ++i) {
    const double theta = double(p) * std::pow(double(freq_base), -2.0 * (i0 + i) / n_rot);
    c[i] = float(std::cos(theta));
    s[i] = float(std::sin(theta));
  }
}

// Rotates pairs [i0, i0 + np) of every head of one token's row x [heads][d].
void rotate_pairs(float* x, int heads, int d, int i0, int np, const float* c, const float* s) {
  for (int h = 0; h < heads; ++h) {
    float* v = x + int64_t(h) * d + 2 * i0;
    for (int i = 0; i < np; ++i) {
      const float a0 = v[2 * i], a1 = v[2 * i + 1];
      v[2 * i] = a0 * c[i] - a1 * s[i];
      v[2 * i + 1] = a0 * s[i] + a1 * c[i];
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

void rope(float* x, int64_t m, int heads, int d, int n_rot, const int32_t* pos,
          float freq_base, ThreadPool& pool) {
  TD_CHECK(n_rot >= 0 && n_rot <= d && n_rot % 2 == 0 && heads > 0);
  parallel_rows(pool, m, m * heads * n_rot, [&](int64_t b, int64_t e) {
    float c[kMaxPairs], s[kMaxPairs];
    for (int64_t t = b; t < e; ++t) {
      for (int i0 = 0; i0 < n_rot / 2; i0 += kMaxPairs) {
        const int np = std::min(kMaxPairs, n_rot / 2 - i0);
        rope_angles(pos[t], i0, np, n_rot, freq_base, c, s);
        rotate_pairs(x + t * int64_t(heads) * d, heads, d, i0, np, c, s);
      }
    }
  });
}

void RopeTable::build(const int32_t* pos, int64_t rows, int rot, float freq_base) {
  TD_CHECK(rot >= 0 && rot % 2 == 0 && rows >= 0);
  m = rows;
  n_rot = rot;
  const int half = rot / 2;
  cos.resize(size_t(rows * half));
  sin.resize(size_t(rows * half));
  for (int64_t t = 0; t < rows; ++t)
    rope_angles(pos[t], 0, half, rot, freq_base, cos.data() + t * half, sin.data() + t * half);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  detail::isa().swiglu(gate, up, out, n);
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace tandem::kernels
