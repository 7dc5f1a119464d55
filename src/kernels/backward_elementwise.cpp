// Backward of the elementwise and per-row forward ops (backward.hpp): get_rows (embedding),
// rmsnorm, rope and swiglu. The loops are in backward_elementwise_body.inc, compiled once
// per instruction set (per_isa.inc); the set in use follows detail::isa(). rope_backward
// is the forward rope() with every angle negated: the rotation is orthogonal, so its
// transpose (the backward) is its inverse. Shapes: m rows (N tokens) of n (D model dim).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 intrinsics
#endif
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string_view>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/fp16.hpp"
#include "tandem/kernels/backward.hpp"

namespace tandem::kernels::detail {
namespace {

// The kernels of one instruction set (backward_elementwise_body.inc).
struct ElementwiseBackwardKernels {
  void (*add_rows)(const int32_t* ids, int64_t m, const float* dy, int64_t cols, float* dw);
  void (*rmsnorm_rows)(const float* x, const float* w, const float* dy, float* dx,
                       double* dw_part, int64_t i0, int64_t i1, int64_t n, float eps);
  void (*swiglu)(const float* gate, const float* up, const float* dout, float* dgate,
                 float* dup, int64_t n);
};

}  // namespace
}  // namespace tandem::kernels::detail

#define TANDEM_PER_ISA_BODY "kernels/backward_elementwise_body.inc"
#define TANDEM_PER_ISA_PREFIX bwd_elem
#include "kernels/per_isa.inc"

namespace tandem::kernels {
namespace {

const detail::ElementwiseBackwardKernels& kernels_in_use() {
#ifdef TANDEM_PER_ISA_X86
  const std::string_view name = detail::isa().name;
  if (name == "avx512") return detail::bwd_elem_avx512::kTable;
  if (name == "avx2") return detail::bwd_elem_avx2::kTable;
#endif
  return detail::bwd_elem_generic::kTable;
}

// Below this many values a per-row op runs on the calling thread alone.
constexpr int64_t kParallelWork = int64_t(1) << 15;

}  // namespace

void get_rows_backward(const int32_t* ids, int64_t m, const float* dy, int64_t cols,
                       float* dw) {
  for (int64_t i = 0; i < m; ++i) TD_CHECK(ids[i] >= 0);
  kernels_in_use().add_rows(ids, m, dy, cols, dw);
}

void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                      int64_t m, int64_t n, float eps, ThreadPool& pool) {
  TD_CHECK(n > 0 && m >= 0);
  const auto& k = kernels_in_use();
  const bool threaded = pool.size() > 1 && m > 1 && m * n >= kParallelWork;
  const int parts = threaded ? pool.size() : 1;
  // dw's sum over the rows of each thread ([parts][n]), added to dw in thread order.
  std::vector<double> dw_part(dw ? size_t(parts) * size_t(n) : 0);
  auto body = [&](int tid, int nth) {
    const auto [b, e] = split_range(m, tid, nth);
    if (b < e)
      k.rmsnorm_rows(x, w, dy, dx, dw ? dw_part.data() + int64_t(tid) * n : nullptr, b, e, n,
                     eps);
  };
  if (threaded)
    pool.run(std::cref(body));
  else
    body(0, 1);
  if (!dw) return;
  for (int64_t j = 0; j < n; ++j) {
    double s = dw[j];
    for (int t = 0; t < parts; ++t) s += dw_part[size_t(t) * size_t(n) + size_t(j)];
    dw[j] = float(s);
  }
}

void rope_backward(float* dx, int64_t m, int heads, int d, const RopeSpec& r,
                   const int32_t* pos, ThreadPool& pool) {
  // rope_angle is p * freq_scale * ...: negating freq_scale negates every angle exactly.
  RopeSpec back = r;
  back.freq_scale = -r.freq_scale;
  rope(dx, m, heads, d, back, pos, pool);
}

void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate,
                     float* dup, int64_t n) {
  kernels_in_use().swiglu(gate, up, dout, dgate, dup, n);
}

}  // namespace tandem::kernels
