// BF16 products of training (bf16_matmul.hpp): the path in use, the packed weights, the
// split of the work over the threads, and the portable path. The AVX-512 BF16 kernels are
// in bf16_matmul_avx512.cpp.
//   forward and dx: a grid of column panels of the output x token groups (panels first:
//                   a thread then reads only its panels of the weights);
//   dw:             a grid of column panels of dw x row groups (panels first: a thread
//                   packs x for its own panels only).
#include "tandem/kernels/bf16_matmul.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "kernels/bf16_matmul.hpp"
#include "kernels/isa.hpp"
#include "tandem/core/error.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::kernels {
namespace {

using detail::kBf16MR;
using detail::kBf16NR;

// Below this many multiply-adds a product runs on the calling thread alone.
constexpr int64_t kMinParallelWork = int64_t(1) << 15;

struct Grid {
  int pa, pb;
};
// pa parts of a (split first) x pb parts of b for up to nth threads.
Grid grid(int nth, int64_t a, int64_t b) {
  const int pa = int(std::max<int64_t>(1, std::min<int64_t>(nth, a)));
  const int pb = int(std::max<int64_t>(1, std::min<int64_t>(nth / pa, b)));
  return {pa, pb};
}

int threads_for(int64_t work, ThreadPool& pool) {
  return work < kMinParallelWork ? 1 : pool.size();
}

void run_parts(int nth, ThreadPool& pool, const std::function<void(int)>& part) {
  if (nth == 1)
    part(0);
  else
    pool.run([&](int tid, int) {
      if (tid < nth) part(tid);
    });
}

// The portable path's copies of the activations, rounded (calling thread; kept).
float* rounded_copy(int slot, const float* src, int64_t n) {
  struct Buf {
    float* p = nullptr;
    size_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf b[2];
  Buf& s = b[slot];
  if (s.n < size_t(n)) {
    std::free(s.p);
    s.p = nullptr;
    s.n = 0;
    s.p = static_cast<float*>(std::aligned_alloc(64, (size_t(n) * 4 + 63) / 64 * 64));
    TD_CHECK(s.p);
    s.n = size_t(n);
  }
  for (int64_t i = 0; i < n; ++i) s.p[i] = bf16_round(src[i]);
  return s.p;
}

const detail::Bf16FastKernels& fast_kernels() {
  const detail::Bf16FastKernels* k = detail::bf16_fast_kernels();
  TD_CHECK(k && cpu_has_avx512_bf16());
  return *k;
}

MatrixView f32_view(const float* p, int64_t rows, int64_t cols) {
  MatrixView m;
  m.type = DType::F32;
  m.rows = rows;
  m.cols = cols;
  m.data = p;
  m.row_stride = size_t(cols) * sizeof(float);
  return m;
}

// c[t][n] (+)= a[t][:] . B[:][n] over a packed operand b (depth K, N columns), m tokens.
void rows_product(const float* a, int64_t K, const uint32_t* b, int64_t N, float* c, int64_t m,
                  bool accumulate, ThreadPool& pool) {
  const detail::Bf16FastKernels& k = fast_kernels();
  const int64_t panels = detail::bf16_panels(N), groups = (m + kBf16MR - 1) / kBf16MR;
  const Grid g = grid(threads_for(m * K * N, pool), panels, groups);
  run_parts(g.pa * g.pb, pool, [&](int tid) {
    const auto [p0, p1] = split_range(panels, tid % g.pa, g.pa);
    const auto [g0, g1] = split_range(groups, tid / g.pa, g.pb);
    k.rows_part(a, K, b, N, c, g0 * kBf16MR, std::min(g1 * kBf16MR, m), p0, p1, accumulate);
  });
}

}  // namespace

uint16_t bf16_from_float(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7F800000u) == 0) return uint16_t((u >> 16) & 0x8000u);  // zero, subnormal
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x0040u);  // NaN: quiet
  return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);  // to nearest even (inf stays)
}

float bf16_to_float(uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); }

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__)
  static const bool has = [] {
    if (!detail::isa_supported("avx512")) return false;  // F, BW, VL and the ZMM state
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    return (a & (1u << 5)) != 0;  // CPUID.(EAX=7,ECX=1):EAX[5] AVX512_BF16
  }();
  return has && detail::bf16_fast_kernels() != nullptr;
#else
  return false;
#endif
}

bool bf16_products_fast() {
  return cpu_has_avx512_bf16() && std::string_view(detail::isa().name) == "avx512";
}

// ---- Bf16Matrix ----

Bf16Matrix::~Bf16Matrix() { std::free(data_); }

Bf16Matrix::Bf16Matrix(Bf16Matrix&& o) noexcept
    : data_(o.data_), bytes_(o.bytes_), rows_(o.rows_), cols_(o.cols_), fast_(o.fast_) {
  o.data_ = nullptr;
  o.bytes_ = 0;
}

Bf16Matrix& Bf16Matrix::operator=(Bf16Matrix&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = o.data_;
    bytes_ = o.bytes_;
    rows_ = o.rows_;
    cols_ = o.cols_;
    fast_ = o.fast_;
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

size_t Bf16Matrix::bytes_of(int64_t rows, int64_t cols, bool fast) {
  if (fast)
    return size_t(detail::bf16_packed_words(cols, rows) + detail::bf16_packed_words(rows, cols)) *
           4;
  return size_t(rows * cols) * sizeof(float);
}

void Bf16Matrix::pack(const float* w, int64_t rows, int64_t cols, ThreadPool& pool) {
  TD_CHECK(rows > 0 && cols > 0 && w);
  const bool fast = bf16_products_fast();
  const size_t bytes = bytes_of(rows, cols, fast);
  if (!data_ || rows != rows_ || cols != cols_ || fast != fast_) {
    std::free(data_);
    data_ = nullptr;
    bytes_ = 0;
    data_ = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!data_) fail(ErrorKind::Resource, "bf16: out of memory for {} bytes of weights", bytes);
    bytes_ = bytes;
    rows_ = rows;
    cols_ = cols;
    fast_ = fast;
  }
  const int nth = threads_for(rows * cols * 64, pool);
  if (fast) {
    const detail::Bf16FastKernels& k = fast_kernels();
    auto* fwd = static_cast<uint32_t*>(data_);
    uint32_t* dx = fwd + detail::bf16_packed_words(cols, rows);
    const int64_t pf = detail::bf16_panels(rows), px = detail::bf16_panels(cols);
    run_parts(nth, pool, [&](int tid) {
      const auto [f0, f1] = split_range(pf, tid, nth);
      k.pack_forward(w, rows, cols, f0, f1, fwd);
      const auto [x0, x1] = split_range(px, tid, nth);
      k.pack_dx(w, rows, cols, x0, x1, dx);
    });
  } else {
    auto* out = static_cast<float*>(data_);
    run_parts(nth, pool, [&](int tid) {
      const auto [r0, r1] = split_range(rows, tid, nth);
      for (int64_t i = r0 * cols; i < r1 * cols; ++i) out[i] = bf16_round(w[i]);
    });
  }
}

// ---- the products ----

void bf16_matmul(const Bf16Matrix& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  TD_CHECK(!w.empty() && m >= 0);
  if (m == 0) return;
  if (w.fast()) {
    rows_product(x, w.cols(), static_cast<const uint32_t*>(w.data()), w.rows(), y, m, false,
                 pool);
    return;
  }
  const float* xr = rounded_copy(0, x, m * w.cols());
  matmul(f32_view(static_cast<const float*>(w.data()), w.rows(), w.cols()), xr, m, y, pool);
}

void bf16_matmul_dx(const Bf16Matrix& w, const float* dy, int64_t m, float* dx,
                    bool accumulate, ThreadPool& pool) {
  TD_CHECK(!w.empty() && m >= 0);
  if (m == 0) return;
  if (w.fast()) {
    const auto* dxp = static_cast<const uint32_t*>(w.data()) +
                      detail::bf16_packed_words(w.cols(), w.rows());
    rows_product(dy, w.rows(), dxp, w.cols(), dx, m, accumulate, pool);
    return;
  }
  const float* dyr = rounded_copy(0, dy, m * w.rows());
  matmul_dx(static_cast<const float*>(w.data()), w.rows(), w.cols(), dyr, m, dx, accumulate,
            pool);
}

void bf16_matmul_dw(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
                    float* dw, ThreadPool& pool) {
  TD_CHECK(rows >= 0 && cols >= 0 && m >= 0);
  if (m == 0 || rows == 0 || cols == 0) return;
  if (bf16_products_fast()) {
    const detail::Bf16FastKernels& k = fast_kernels();
    const int64_t panels = detail::bf16_panels(cols), groups = (rows + kBf16MR - 1) / kBf16MR;
    const Grid g = grid(threads_for(m * rows * cols, pool), panels, groups);
    run_parts(g.pa * g.pb, pool, [&](int tid) {
      const auto [p0, p1] = split_range(panels, tid % g.pa, g.pa);
      const auto [g0, g1] = split_range(groups, tid / g.pa, g.pb);
      k.dw_part(dy, x, m, rows, cols, g0 * kBf16MR, std::min(g1 * kBf16MR, rows), p0, p1, dw);
    });
    return;
  }
  const float* dyr = rounded_copy(0, dy, m * rows);
  const float* xr = rounded_copy(1, x, m * cols);
  matmul_dw(dyr, xr, m, rows, cols, dw, pool);
}

size_t bf16_scratch_bytes(int64_t rows, int64_t cols, int64_t m, int threads) {
  if (m <= 0 || rows <= 0 || cols <= 0) return 0;
  if (!bf16_products_fast())  // the rounded activations (calling thread), the f32 kernels'
    return size_t(m * (std::max(rows, cols) + cols)) * sizeof(float) +
           matmul_scratch_bytes(f32_view(nullptr, rows, cols), m, threads);
  // Per thread: slot 0 (the A block of any product), slot 1 (dw's x for its panels).
  const int64_t panels = detail::bf16_panels(cols);
  const int64_t np = (panels + std::min<int64_t>(threads, panels) - 1) /
                     std::min<int64_t>(threads, panels);
  const detail::Bf16Blocking b = detail::bf16_blocking(detail::bf16_pairs(m));
  const int64_t slot0 = std::max({detail::bf16_rows_scratch_words(cols),
                                  detail::bf16_rows_scratch_words(rows), b.mc * b.kcp});
  const int64_t slot1 = np * b.kcp * kBf16NR;
  return size_t(threads) * size_t(slot0 + slot1) * 4;
}

}  // namespace tandem::kernels
