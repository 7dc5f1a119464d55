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
// per step and shared by every layer's Q and K (angle in double, as kernels::rope). A
// fused write rotates adjacent pairs only (RopeStyle::Adjacent).
struct RopeTable {
  int64_t m = 0;
  int n_rot = 0;
  std::vector<float> cos, sin;

  // Rotating with the table gives the same floats as rope() with r.
  void build(const int32_t* pos, int64_t m, const RopeSpec& r);
};

// One weight of a fused product: y[i][r] = sum_c xin[i][c] * w[r][c] (+ bias[r]) for
// rows i in [row_from, m); y points at row row_from ([m - row_from][w.rows]).
struct MatmulOut {
  Weight w;
  float* y = nullptr;
  const float* bias = nullptr;
  int rope_d = 0;  // > 0: rotate the pairs of each output row's heads of this dim
};

// The kernel choices of a fused product for one shape: the tile kernel of each output,
// rows per unit and the units, tokens per tile call and per cache block, the thread
// grid. Made once per shape by plan_matmul (the execution graph does it when it is
// compiled) and reused by every call of that shape; matmul_fused plans a call itself
// only when the spec carries no plan for it (direct calls, tests), or when the kernel
// switches changed since (tests switching instruction sets).
struct MatmulPlan {
  struct Unit {
    int out;
    int64_t r;
    int rows;
  };
  enum class Kernel : uint8_t { Bias, Plain, Int8, Packed, Lanes };
  using Fn = void (*)();  // the chosen tile functions, cast back in matmul.cpp
  // What the plan was made for.
  const void* isa = nullptr;
  int64_t n = -1;
  int threads = 0;
  bool int8 = false, packed = false, lanes = false;
  // The choices.
  std::vector<Kernel> kernel;  // per output
  Fn plain = nullptr, int8_tile = nullptr, packed_tile = nullptr;
  Fn lanes_tile = nullptr;  // F32 weights, tokens in lanes (groups of lane_tokens)
  Fn quantize_x = nullptr;  // the activation rows int8_tile and packed_tile read
  int64_t panel_bytes = 0;  // of the packed layout packed_tile reads
  int nr = 0, tile_tokens = 0, nth = 1, pr = 1, pm = 1;
  int64_t xqs = 0, token_block = 0, token_tiles = 0;
  int lane_tokens = 0;  // > 0: lanes_tile's transposed activations, groups of this many
  bool prep = false, prep_inline = false;
  std::vector<Unit> units;
};

struct FusedMatmul {
  std::vector<MatmulOut> outs;  // same cols; all the same DType
  const float* norm_w = nullptr;  // set: xin = RMSNorm(x) * norm_w, else xin = x
  float eps = 0.0f;
  bool glu = false;  // outs = {gate, up} of equal rows: writes silu(gate)*up to outs[0].y
                     // and outs[1].y is not written (may be null)
  const RopeTable* rope = nullptr;  // required when an out has rope_d > 0
  MatmulPlan plan;  // set by plan_matmul; matmul_fused uses it when it fits the call. It
                    // belongs to these outs: whoever changes a weight resets it (n = -1).
};

// The plan of f for calls of n rows on a pool of `threads` (checks the spec; throws
// Error(Internal) on one that breaks the rules above).
void plan_matmul(const FusedMatmul& f, int64_t n, int threads, MatmulPlan& plan);
// Plans made so far in this process (tests: a replayed graph makes none).
uint64_t matmul_plans_made();

// Runs the product on rows [row_from, m); x points at row row_from of the input
// ([m - row_from][cols]); the rope table is read at rows row_from.. . Throws
// Error(Internal) on a spec that breaks the rules above.
void matmul_fused(const FusedMatmul& f, const float* x, int64_t row_from, int64_t m,
                  ThreadPool& pool);

}  // namespace tandem::kernels
