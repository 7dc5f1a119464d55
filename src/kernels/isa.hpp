#pragma once
// Private: the hot inner kernels, compiled once per instruction set (AVX-512, AVX2,
// portable scalar) and picked at run time from the CPU's features.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tandem/core/dtype.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::kernels::detail {

// Most tokens (x rows) one matmul tile handles.
inline constexpr int kTileTokens = 4;
// Keys an attention unit scores at once.
inline constexpr int kAttnBlock = 64;

// y[t][r] = dot(x[t], W[r]) (+ bias[r]) for t < mt (1..kTileTokens), r < nr (1..tile_rows
// of the table); w points at row 0 of the tile, x row t at x + t*x_stride, y row t at
// y + t*y_stride.
using TileFn = void (*)(const uint8_t* w, size_t row_stride, int nr, const float* x,
                        int64_t x_stride, int mt, int64_t cols, float* y, int64_t y_stride,
                        const float* bias);

// Per-thread buffers of an attention unit: s [H][kAttnBlock], mx [H], l [H],
// idx [kAttnBlock].
struct AttnScratch {
  float* s;
  float* mx;
  double* l;
  int64_t* idx;
};

// Attention of query i over the keys [j0, j1) for every head: out [H][d] (normalized
// over those keys) and, when lse is set, lse [H] (-inf and a zero row where no key in
// the range is visible).
using AttnFn = void (*)(const AttentionArgs& a, int64_t i, int64_t j0, int64_t j1, float* out,
                        float* lse, const AttnScratch& scratch);

// out[i] = silu(gate[i]) * up[i]; out may equal gate.
using SwigluFn = void (*)(const float* gate, const float* up, float* out, int64_t n);

struct IsaKernels {
  const char* name;
  int tile_rows;  // weight rows per matmul tile
  TileFn f32, f16, bf16, q8_0, q4_0;
  AttnFn attn;
  SwigluFn swiglu;
};

const IsaKernels& isa_avx512();
const IsaKernels& isa_avx2();
const IsaKernels& isa_generic();

// The kernels in use: the best the CPU supports, or what TANDEM_KERNELS_ISA
// ("avx512", "avx2", "generic") asks for when set and supported.
const IsaKernels& isa();
// Whether this CPU can run the named set.
bool isa_supported(std::string_view name);
// Switches the kernels in use (tests); false when unknown or unsupported.
bool force_isa(std::string_view name);

TileFn tile_fn(const IsaKernels& k, DType t);

}  // namespace tandem::kernels::detail
