#pragma once
// Fused matrix products: several weights that read the same activations run as one op
// (one parallel region, the activations normalized and quantized once), with RMSNorm of
// the input, rotary embedding of the output and SwiGLU of a gate/up pair folded in.
// The execution graph (graph/) builds these from its fusion passes; kernels::matmul is
// the single-output case.
#include <cstdint>
#include <span>
#include <vector>

#include "tandem/kernels/ops.hpp"

namespace tandem::kernels {

// cos/sin of the rotary angle of every token and pair: [m][n_rot/2] each, computed once
// per step and shared by every layer's Q and K (angle in double, as kernels::rope).
struct RopeTable {
  int64_t m = 0;
  int n_rot = 0;
  std::vector<float> cos, sin;

  // Rotating with the table gives the same floats as rope().
  void build(const int32_t* pos, int64_t m, int n_rot, float freq_base);
};

// One weight of a fused product: y[i][r] = sum_c xin[i][c] * w[r][c] (+ bias[r]) for
// rows i in [row_from, m); y points at row row_from ([m - row_from][w.rows]).
struct MatmulOut {
  Weight w;
  float* y = nullptr;
  const float* bias = nullptr;
  int rope_d = 0;  // > 0: rotate the pairs of each output row's heads of this dim
};

struct FusedMatmul {
  std::vector<MatmulOut> outs;  // same cols; all the same DType
  const float* norm_w = nullptr;  // set: xin = RMSNorm(x) * norm_w, else xin = x
  float eps = 0.0f;
  bool glu = false;  // outs = {gate, up} of equal rows: writes silu(gate)*up to outs[0].y
                     // and outs[1].y is not written (may be null)
  const RopeTable* rope = nullptr;  // required when an out has rope_d > 0
};

// Runs the product on rows [row_from, m); x points at row row_from of the input
// ([m - row_from][cols]); the rope table is read at rows row_from.. . Throws
// Error(Internal) on a spec that breaks the rules above.
void matmul_fused(const FusedMatmul& f, const float* x, int64_t row_from, int64_t m,
                  ThreadPool& pool);

}  // namespace tandem::kernels
