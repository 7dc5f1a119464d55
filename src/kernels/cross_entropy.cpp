// The output head fused with cross-entropy (backward.hpp: cross_entropy). Per block of
// block_tokens tokens: logits [block][V] by the forward f32 product (kernels::matmul on
// an F32 view of w), a stable log-softmax per row (max, exp and sum per row on the
// threads, vectorized per instruction set in cross_entropy_body.inc), the gradient
// g = (softmax - onehot) * grad_scale in place of the logits, then dx = g . w
// (matmul_dx) and dw += g^T . x (matmul_dw). Memory: [block][V] floats, never [m][V].
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 intrinsics
#endif
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string_view>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/fp16.hpp"
#include "tandem/kernels/backward.hpp"

namespace tandem::kernels::detail {
namespace {
struct SoftmaxRowKernels {
  float (*max)(const float* l, int64_t V);
  double (*exp_sum)(float* l, int64_t V, float mx);
  void (*scale)(float* l, int64_t V, float s);
};
}  // namespace
}  // namespace tandem::kernels::detail

#define TANDEM_PER_ISA_BODY "kernels/cross_entropy_body.inc"
#define TANDEM_PER_ISA_PREFIX xent
#include "kernels/per_isa.inc"

namespace tandem::kernels {
namespace {

const detail::SoftmaxRowKernels& rows_in_use() {
#ifdef TANDEM_PER_ISA_X86
  const std::string_view name = detail::isa().name;
  if (name == "avx512") return detail::xent_avx512::kSoftmaxRows;
  if (name == "avx2") return detail::xent_avx2::kSoftmaxRows;
#endif
  return detail::xent_generic::kSoftmaxRows;
}

// Most threads the per-row softmax may use.
constexpr int kMaxThreads = 256;

}  // namespace

double cross_entropy(const CrossEntropyArgs& a, ThreadPool& pool) {
  TD_CHECK(a.m >= 0 && a.D >= 0 && a.V >= 1 && a.block_tokens >= 1);
  TD_CHECK(a.x && a.w && a.target);
  const int64_t D = a.D, V = a.V;
  const bool grad = a.dx || a.dw;
  const detail::SoftmaxRowKernels& sk = rows_in_use();
  MatrixView wv;
  wv.type = DType::F32;
  wv.rows = V;
  wv.cols = D;
  wv.data = a.w;
  wv.row_stride = size_t(D) * sizeof(float);
  // The logits (then the gradient) of one block, on the calling thread.
  thread_local std::vector<float> t_logits;
  const int64_t bt_max = std::min(a.block_tokens, std::max<int64_t>(a.m, 1));
  t_logits.resize(size_t(bt_max * V));
  float* logits = t_logits.data();
  const int nth = std::min(pool.size(), kMaxThreads);
  double loss_part[kMaxThreads];
  int64_t correct_part[kMaxThreads];
  std::fill(loss_part, loss_part + nth, 0.0);
  std::fill(correct_part, correct_part + nth, 0);
  for (int64_t b0 = 0; b0 < a.m; b0 += a.block_tokens) {
    const int64_t bt = std::min(a.block_tokens, a.m - b0);
    const int32_t* tgt = a.target + b0;
    bool any = false;
    for (int64_t i = 0; i < bt; ++i) {
      TD_CHECK(tgt[i] < V);
      any = any || tgt[i] >= 0;
    }
    if (!any) {  // every token ignored: zero dx rows, nothing else
      if (a.dx) std::fill(a.dx + b0 * D, a.dx + (b0 + bt) * D, 0.0f);
      continue;
    }
    matmul(wv, a.x + b0 * D, bt, logits, pool);
    // Rows split over the threads; each sums its tokens' loss and hits in its own slot,
    // added in a fixed order below (the same result for any thread timing).
    auto rows = [&](int tid, int parts) {
      const auto [i0, i1] = split_range(bt, tid, parts);
      for (int64_t i = i0; i < i1; ++i) {
        float* l = logits + i * V;
        const int32_t t = tgt[i];
        if (t < 0) {
          if (grad) std::fill(l, l + V, 0.0f);
          continue;
        }
        const float mx = sk.max(l, V);
        const float lt = l[t];
        // The target has the highest logit, and no lower id has it too.
        if (lt == mx && std::find(l, l + t, mx) == l + t) ++correct_part[tid];
        const double sum = sk.exp_sum(l, V, mx);
        loss_part[tid] += double(mx) + std::log(sum) - double(lt);
        if (grad) {
          sk.scale(l, V, float(double(a.grad_scale) / sum));
          l[t] -= a.grad_scale;
        }
      }
    };
    if (nth == 1 || bt * V < (int64_t(1) << 14))
      rows(0, 1);
    else
      pool.run([&](int tid, int) {
        if (tid < nth) rows(tid, nth);
      });
    if (a.dx) matmul_dx(a.w, V, D, logits, bt, a.dx + b0 * D, false, pool);
    if (a.dw) matmul_dw(logits, a.x + b0 * D, bt, V, D, a.dw, pool);
  }
  double loss = 0.0;
  int64_t correct = 0;
  for (int t = 0; t < nth; ++t) {
    loss += loss_part[t];
    correct += correct_part[t];
  }
  if (a.correct) *a.correct = correct;
  return loss;
}

}  // namespace tandem::kernels
