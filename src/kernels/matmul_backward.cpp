// Gradients of the dense f32 products (backward.hpp: matmul_dx, matmul_dw). The blocked
// kernels are written once in matmul_backward_body.inc and compiled per instruction set;
// the set in use follows detail::isa(). This file splits the work over the threads:
//   matmul_dx: a grid of column strips x token groups (each thread writes its own block
//              of dx);
//   matmul_dw: a grid of row groups x column strips of dw (no two threads write the same
//              values; rows are split first).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 intrinsics
#endif
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string_view>

#include "kernels/isa.hpp"
#include "tandem/core/aligned_scratch.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/fp16.hpp"
#include "tandem/kernels/backward.hpp"

namespace tandem::kernels::detail {
namespace {

// The blocked kernels of one instruction set: dx_part writes dx for tokens [t0, t1) and
// columns [c0, c1); dw_part adds to dw rows [r0, r1), columns [c0, c1); c0 a multiple
// of nr. mr, nr: the register tile (rows of C, columns of C).
struct MatmulBackwardKernels {
  void (*dx)(const float* w, int64_t rows, int64_t cols, const float* dy, int64_t t0,
             int64_t t1, int64_t c0, int64_t c1, float* dx, bool accumulate);
  void (*dw)(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
             int64_t r0, int64_t r1, int64_t c0, int64_t c1, float* dw);
  int mr, nr;
};

// Per-thread scratch for the packed activation panels (64-byte aligned, grown as
// needed, kept for the thread's life): slot 0 the A block, slot 1 dw's x block.
float* mmb_scratch(int slot, size_t floats) {
  thread_local AlignedScratch s[2];
  return static_cast<float*>(s[slot].get(floats * sizeof(float)));
}

}  // namespace
}  // namespace tandem::kernels::detail

#define TANDEM_PER_ISA_BODY "kernels/matmul_backward_body.inc"
#define TANDEM_PER_ISA_PREFIX mmb
#include "kernels/per_isa.inc"

namespace tandem::kernels {
namespace {

// Below this many multiply-adds the op runs on the calling thread alone.
constexpr int64_t kMinParallelWork = int64_t(1) << 15;

const detail::MatmulBackwardKernels& kernels_in_use() {
#ifdef TANDEM_PER_ISA_X86
  const std::string_view name = detail::isa().name;
  if (name == "avx512") return detail::mmb_avx512::kMatmulBackward;
  if (name == "avx2") return detail::mmb_avx2::kMatmulBackward;
#endif
  return detail::mmb_generic::kMatmulBackward;
}

// A grid of pa parts of a (split first) x pb parts of b for up to nth threads.
struct Grid {
  int pa, pb;
};
Grid grid(int nth, int64_t a, int64_t b) {
  const int pa = int(std::max<int64_t>(1, std::min<int64_t>(nth, a)));
  const int pb = int(std::max<int64_t>(1, std::min<int64_t>(nth / pa, b)));
  return {pa, pb};
}

void run_parts(int nth, ThreadPool& pool, const std::function<void(int)>& part) {
  if (nth == 1)
    part(0);
  else
    pool.run([&](int tid, int) {
      if (tid < nth) part(tid);
    });
}

}  // namespace

void matmul_dx(const float* w, int64_t rows, int64_t cols, const float* dy, int64_t m,
               float* dx, bool accumulate, ThreadPool& pool) {
  TD_CHECK(rows >= 0 && cols >= 0 && m >= 0);
  if (m == 0 || cols == 0) return;
  const detail::MatmulBackwardKernels& k = kernels_in_use();
  const int64_t strips = (cols + k.nr - 1) / k.nr, groups = (m + k.mr - 1) / k.mr;
  const int nth = m * rows * cols < kMinParallelWork ? 1 : pool.size();
  // Column strips first: each thread then reads only its columns of w.
  const Grid g = grid(nth, strips, groups);
  run_parts(g.pa * g.pb, pool, [&](int tid) {
    const auto [s0, s1] = split_range(strips, tid % g.pa, g.pa);
    const auto [g0, g1] = split_range(groups, tid / g.pa, g.pb);
    k.dx(w, rows, cols, dy, g0 * k.mr, std::min(g1 * k.mr, m), s0 * k.nr,
         std::min(s1 * k.nr, cols), dx, accumulate);
  });
}

void matmul_dw(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
               float* dw, ThreadPool& pool) {
  TD_CHECK(rows >= 0 && cols >= 0 && m >= 0);
  if (m == 0 || rows == 0 || cols == 0) return;
  const detail::MatmulBackwardKernels& k = kernels_in_use();
  const int64_t groups = (rows + k.mr - 1) / k.mr, strips = (cols + k.nr - 1) / k.nr;
  const int nth = m * rows * cols < kMinParallelWork ? 1 : pool.size();
  const Grid g = grid(nth, groups, strips);
  run_parts(g.pa * g.pb, pool, [&](int tid) {
    const auto [g0, g1] = split_range(groups, tid % g.pa, g.pa);
    const auto [s0, s1] = split_range(strips, tid / g.pa, g.pb);
    k.dw(dy, x, m, rows, cols, g0 * k.mr, std::min(g1 * k.mr, rows), s0 * k.nr,
         std::min(s1 * k.nr, cols), dw);
  });
}

}  // namespace tandem::kernels
