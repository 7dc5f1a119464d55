// The optimizer kernels of backward.hpp: the AdamW step and the sum of squares of the
// global gradient norm. The loops are in optimizer_body.inc, compiled once per instruction
// set (per_isa.inc); the set in use follows detail::isa(). Both are memory-bound streams,
// threaded over contiguous ranges when large.
//
// Determinism: adamw_step's threads take ranges starting at multiples of kAlign values, so
// on a given instruction set the same values go through the vector loop (and the same
// last n % lanes through its scalar tail) whatever the thread count: the result does not
// depend on it. sum_squares sums fixed chunks of kChunk values, each in a fixed order,
// then the chunks' sums in index order: its result is the same for every thread count
// and instruction set (optimizer_body.inc).
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

// One AdamW step's constants, in f32: p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
// + decay * p is p -= lr * (m/bc1 / (sqrt(v/bc2) + eps) + weight_decay * p).
struct AdamWConstants {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, grad_scale;
  float step_size;     // lr / (1 - beta1^step)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^step)
  float eps;
  float decay;  // lr * weight_decay
};

// The kernels of one instruction set (optimizer_body.inc).
struct OptimizerKernels {
  void (*adamw)(float* p, const float* grad, float* m, float* v, int64_t i0, int64_t i1,
                const AdamWConstants& c);
  double (*sum_squares)(const float* x, int64_t n);
};

}  // namespace
}  // namespace tandem::kernels::detail

#define TANDEM_PER_ISA_BODY "kernels/optimizer_body.inc"
#define TANDEM_PER_ISA_PREFIX optim
#include "kernels/per_isa.inc"

namespace tandem::kernels {
namespace {

const detail::OptimizerKernels& kernels_in_use() {
#ifdef TANDEM_PER_ISA_X86
  const std::string_view name = detail::isa().name;
  if (name == "avx512") return detail::optim_avx512::kTable;
  if (name == "avx2") return detail::optim_avx2::kTable;
#endif
  return detail::optim_generic::kTable;
}

// Below this many values the work stays on the calling thread.
constexpr int64_t kParallelWork = int64_t(1) << 15;
// Threads' ranges start at multiples of this many values (whole cache lines).
constexpr int64_t kAlign = 64;
// sum_squares' unit of summation (its result depends on it, not on the threads).
constexpr int64_t kChunk = int64_t(1) << 14;

}  // namespace

void adamw_step(float* p, const float* grad, float* m, float* v, int64_t n, const AdamW& h,
                int64_t step, float grad_scale, ThreadPool& pool) {
  TD_CHECK(n >= 0 && step >= 1);
  const double bc1 = 1.0 - std::pow(double(h.beta1), double(step));
  const double bc2 = 1.0 - std::pow(double(h.beta2), double(step));
  const detail::AdamWConstants c{h.beta1,
                                 h.beta2,
                                 1.0f - h.beta1,
                                 1.0f - h.beta2,
                                 grad_scale,
                                 float(double(h.lr) / bc1),
                                 float(1.0 / std::sqrt(bc2)),
                                 h.eps,
                                 float(double(h.lr) * double(h.weight_decay))};
  const auto& k = kernels_in_use();
  if (pool.size() == 1 || n < kParallelWork) {
    k.adamw(p, grad, m, v, 0, n, c);
    return;
  }
  const int64_t blocks = (n + kAlign - 1) / kAlign;
  auto body = [&](int tid, int nth) {
    const auto [b, e] = split_range(blocks, tid, nth);
    if (b < e) k.adamw(p, grad, m, v, b * kAlign, std::min(n, e * kAlign), c);
  };
  pool.run(std::cref(body));
}

double sum_squares(const float* x, int64_t n, ThreadPool& pool) {
  TD_CHECK(n >= 0);
  const auto& k = kernels_in_use();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) return k.sum_squares(x, n);
  std::vector<double> sums(size_t(chunks), 0.0);
  auto body = [&](int tid, int nth) {
    const auto [b, e] = split_range(chunks, tid, nth);
    for (int64_t i = b; i < e; ++i)
      sums[size_t(i)] = k.sum_squares(x + i * kChunk, std::min(kChunk, n - i * kChunk));
  };
  if (pool.size() > 1 && n >= kParallelWork)
    pool.run(std::cref(body));
  else
    body(0, 1);
  double s = 0.0;
  for (const double v : sums) s += v;
  return s;
}

}  // namespace tandem::kernels
