#pragma once
// Private: the AVX-512 BF16 kernels of the BF16 products (bf16_matmul_avx512.cpp) and the
// layouts and blocking that bf16_matmul.cpp (threads, storage, scratch sizes) shares
// with them.
//
// Every product is C += A . B with depth K, cut in pairs of depth steps: a uint32 holds
// two BF16 values of consecutive steps (the low half the even step), as VDPBF16PS reads
// them. The micro-kernel holds kBf16MR rows x kBf16NR columns of C in 24 registers; per
// pair of steps it loads 3 vectors of B (16 pairs each) and broadcasts a pair of A per row.
//   B, packed panels: [panels][Kp][kBf16NR] uint32 (Kp = ceil(K / 2) pairs; columns past N
//     and a missing odd step are zeros). The weights are stored in this form twice:
//       forward: K = cols, N = rows, pair p of column r = (w[r][2p], w[r][2p+1]);
//       dx:      K = rows, N = cols, pair p of column c = (w[2p][c], w[2p+1][c]).
//     matmul_dw packs x this way per call (K = tokens: pair p = tokens 2p and 2p+1).
//   A: forward and dx read the activations as BF16 rows (x or dy, [tokens][Kp] pairs per
//     block), packed per call; matmul_dw packs dy^T in groups of kBf16MR rows of dw,
//     [group][Kp][kBf16MR] (pair p of row r = (dy[2p][r], dy[2p+1][r])).
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace tandem::kernels::detail {

inline constexpr int kBf16MR = 8;    // rows of C per register tile
inline constexpr int kBf16NV = 3;    // vectors of 16 columns per register tile
inline constexpr int kBf16NR = 48;   // columns of C per tile: a panel's width
// Depth per pass (pairs) and bytes of an A block (kept in L2 while the panels go by). 512
// pairs measured 5-15% faster than 256 at the small preset's shapes (one thread); larger A
// blocks did not help.
inline constexpr int64_t kBf16MaxKcp = 512;
inline constexpr int64_t kBf16ABlockBytes = int64_t(256) << 10;

inline int64_t bf16_pairs(int64_t k) { return (k + 1) / 2; }
inline int64_t bf16_panels(int64_t n) { return (n + kBf16NR - 1) / kBf16NR; }
// uint32s of a packed operand of depth k and n columns.
inline int64_t bf16_packed_words(int64_t k, int64_t n) { return bf16_panels(n) * bf16_pairs(k) * kBf16NR; }

// Pairs per pass over a depth of kp pairs (passes of equal length) and the rows of C per
// A block at that depth (a multiple of kBf16MR).
struct Bf16Blocking {
  int64_t kcp, mc;
};
inline Bf16Blocking bf16_blocking(int64_t kp) {
  const int64_t passes = std::max<int64_t>(1, (kp + kBf16MaxKcp - 1) / kBf16MaxKcp);
  const int64_t kcp = std::max<int64_t>(1, (kp + passes - 1) / passes);
  const int64_t mc = std::max<int64_t>(1, kBf16ABlockBytes / 4 / kcp / kBf16MR) * kBf16MR;
  return {kcp, mc};
}
// uint32s of one thread's buffers: the rows products (A block) and matmul_dw over np
// panels of x (its packed x for one pass, then the A block of dy^T).
inline int64_t bf16_rows_scratch_words(int64_t k) {
  const Bf16Blocking b = bf16_blocking(bf16_pairs(k));
  return b.mc * b.kcp;
}
inline int64_t bf16_dw_scratch_words(int64_t m, int64_t np) {
  const Bf16Blocking b = bf16_blocking(bf16_pairs(m));
  return np * b.kcp * kBf16NR + b.mc * b.kcp;
}

struct Bf16FastKernels {
  // Panels [p0, p1) of w's forward (dx) layout, at out (the whole operand).
  void (*pack_forward)(const float* w, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                       uint32_t* out);
  void (*pack_dx)(const float* w, int64_t rows, int64_t cols, int64_t p0, int64_t p1,
                  uint32_t* out);
  // c[t][n] (+)= sum_k a[t][k] * B[k][n] for tokens [t0, t1) and the columns of panels
  // [p0, p1): a f32 [..][K] (rounded here), b packed (depth K, N columns), c [..][N].
  void (*rows_part)(const float* a, int64_t K, const uint32_t* b, int64_t N, float* c,
                    int64_t t0, int64_t t1, int64_t p0, int64_t p1, bool accumulate);
  // dw[r][c] += sum_i dy[i][r] * x[i][c] for rows [r0, r1) and the columns of panels
  // [p0, p1), over all m tokens.
  void (*dw_part)(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
                  int64_t r0, int64_t r1, int64_t p0, int64_t p1, float* dw);
};
// The kernels (null where they were not compiled: not x86).
const Bf16FastKernels* bf16_fast_kernels();

}  // namespace tandem::kernels::detail
