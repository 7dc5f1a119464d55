#pragma once
// The forward pass of a model (any architecture HParams knows) as a graph (graph/graph.hpp), one per shape:
// m tokens per step, and the rows [out_from, m) whose logits are asked for (none when
// out_from == m). The only external value is the logits [m - out_from][V].
#include <cstdint>

#include "tandem/graph/graph.hpp"
#include "tandem/model/model.hpp"

namespace tandem {

// The graph as the model defines it, one node per op: RMSNorm, three matmuls for Q, K, V,
// (per-head Q/K norms,) RoPE of Q and K, attention, ...; the architecture's options
// (HParams: rope style, Q/K norms, post-norms, GELU, embedding scale, soft-capped logits,
// local layers' rope) choose the nodes. Passes (graph::fuse, graph::eliminate_dead)
// rewrite it.
graph::Graph build_forward_graph(const Model& model, int64_t m, int64_t out_from);

}  // namespace tandem
