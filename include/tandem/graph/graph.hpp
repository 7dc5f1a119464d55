#pragma once
// The forward pass as a graph: values (f32 matrices [rows][cols]) and nodes (ops) in
// execution order. A graph is built once per shape (tokens per step, rows that need
// output), rewritten by passes (fusion, dead-node elimination) and compiled into an
// executor (graph/executor.hpp) that plans its buffers and replays it every step.
//
// Rows: every value has `rows` logical rows of which only [row0, rows) are stored and
// computed; dead-row elimination raises row0 where later nodes read fewer rows (the
// last layer of a prefill needs only the rows whose logits are asked for).
#include <cstdint>
#include <string>
#include <vector>

#include "tandem/kernels/ops.hpp"

namespace tandem::graph {

using ValueId = int32_t;

struct Value {
  std::string name;
  int64_t rows = 0, cols = 0;
  int64_t row0 = 0;       // first stored row
  bool external = false;  // memory bound by the caller at run time (graph output)

  int64_t stored_floats() const { return (rows - row0) * cols; }
};

enum class OpKind {
  Embed,      // out = rows of the embedding matrix at the step's token ids, times scale
  RmsNorm,    // out = RMSNorm(in[0]) * norm_w (each run of norm_cols values when set)
  MatMul,     // outs[k] = in[0] (optionally RMSNorm'ed) x mats[k]^T, see kernels::FusedMatmul
  Rope,       // out = rotary embedding of in[0] ([rows][heads][d])
  Add,        // out = in[0] + in[1]
  SwiGlu,     // out = silu(in[0]) * in[1]
  GeGlu,      // out = gelu(in[0]) * in[1] (tanh approximation)
  SoftCap,    // out = cap * tanh(in[0] / cap)
  Attention,  // out = attention of queries in[0] over the cache after storing K/V in[1], in[2]
};

const char* op_name(OpKind k);

// One weight of a MatMul node and the value it writes.
struct MatSpec {
  kernels::Weight w;
  const float* bias = nullptr;
  ValueId out = -1;
  bool rope = false;  // rotary embedding folded into the write (fusion)
  int rope_heads = 0;
};

struct Node {
  OpKind kind = OpKind::Add;
  std::string name;           // "L3.wq", "L3.attention", ... (dump, errors)
  const char* phase = "";     // trace span name, a static string: "qkv", "attention", ...
  std::vector<ValueId> in;    // inputs
  ValueId out = -1;           // output (MatMul: see mats)
  std::vector<MatSpec> mats;  // MatMul only
  const float* norm_w = nullptr;  // RmsNorm, or MatMul with a folded RMSNorm
  float eps = 0.0f;
  int64_t norm_cols = 0;      // RmsNorm: normalize each run of this many values of a row
                              // (per-head norm; norm_w has norm_cols values); 0: whole rows
  float scale = 1.0f;         // Embed: multiplier of the rows
  float cap = 0.0f;           // SoftCap
  bool glu = false;           // MatMul of {gate, up} writing silu(gate)*up to mats[0].out
  int rope_heads = 0;         // Rope
  int rope_id = 0;            // Rope, or MatMul with a fused rope: index into Graph::ropes
  int layer = -1;             // Attention
  int64_t row_from = 0;       // rows computed: [row_from, rows of the output)
  bool side_effect = false;   // kept even when nothing reads its output (stores K/V)

  std::vector<ValueId> outputs() const;
};

// A rotary embedding of heads of dim d (Rope nodes and fused ropes name theirs by index
// into Graph::ropes).
struct RopeParams {
  int d = 0;
  kernels::RopeSpec spec;
};

struct Graph {
  std::vector<Value> values;
  std::vector<Node> nodes;  // execution order
  std::vector<RopeParams> ropes;
  int64_t m = 0;            // tokens per step (rows of per-token values)

  ValueId add_value(std::string name, int64_t rows, int64_t cols);
  Node& add_node(OpKind kind, std::string name, std::vector<ValueId> in, ValueId out);
  // Indices of the nodes that read value v.
  std::vector<int> readers(ValueId v) const;
  // Checks the invariants (ids in range, each value written once before it is read,
  // shapes agree); throws Error(Internal) naming the node.
  void validate() const;
  // One line per node, for tests and --verbose output.
  std::string dump() const;
};

// Passes. Each keeps the graph's results bit for bit except where noted.
struct PassStats {
  int fused_qkv = 0, fused_glu = 0, fused_norm = 0, fused_rope = 0;
  int dead_nodes = 0;
  int64_t dead_rows = 0;  // rows no longer computed, summed over nodes
};

// Q/K/V (and any MatMuls reading one value with weights of one type) into one node;
// gate/up + SwiGLU into one node; RMSNorm into the matmul that reads it; RoPE into the
// write of the matmul that produces its input.
void fuse(Graph& g, PassStats& stats);
// Drops nodes whose outputs nothing needs (graph outputs are the external values) unless
// they have side effects, and computes only the rows later nodes read.
void eliminate_dead(Graph& g, PassStats& stats);

}  // namespace tandem::graph
