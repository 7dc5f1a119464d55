// Graph passes: dead-node elimination (with dead rows) and the fusions.
#include <algorithm>
#include <limits>
#include <map>

#include "tandem/core/error.hpp"
#include "tandem/graph/graph.hpp"

namespace tandem::graph {
namespace {

constexpr int64_t kUnneeded = std::numeric_limits<int64_t>::max();

// Drops the nodes marked in `gone`, keeping the order of the rest.
void compact(Graph& g, const std::vector<bool>& gone) {
  std::vector<Node> kept;
  kept.reserve(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!gone[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

// The MatMul node (index) and weight slot that writes v, or {-1, -1}.
std::pair<int, int> matmul_writer(const Graph& g, ValueId v) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (n.kind != OpKind::MatMul) continue;
    for (size_t k = 0; k < n.mats.size(); ++k)
      if (n.mats[k].out == v) return {int(i), int(k)};
  }
  return {-1, -1};
}

// MatMuls that read one value with weights of one type (and the same rows) become one.
int merge_matmuls(Graph& g) {
  std::vector<bool> gone(g.nodes.size(), false);
  int merged = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& a = g.nodes[i];
    if (gone[i] || a.kind != OpKind::MatMul || a.glu || a.norm_w) continue;
    for (size_t j = i + 1; j < g.nodes.size(); ++j) {
      const Node& b = g.nodes[j];
      if (gone[j] || b.kind != OpKind::MatMul || b.glu || b.norm_w || b.in != a.in ||
          b.row_from != a.row_from || b.mats[0].w.type != a.mats[0].w.type ||
          b.mats[0].w.cols != a.mats[0].w.cols)
        continue;
      // The outputs of b are read only after b, hence after a: moving them up is safe.
      a.mats.insert(a.mats.end(), b.mats.begin(), b.mats.end());
      a.name += "+" + b.name;
      gone[j] = true;
    }
    if (a.mats.size() > 1) ++merged;
  }
  compact(g, gone);
  return merged;
}

}  // namespace

void eliminate_dead(Graph& g, PassStats& stats) {
  std::vector<int64_t> need(g.values.size(), kUnneeded);
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].external) need[v] = g.values[v].row0;
  std::vector<bool> gone(g.nodes.size(), false);
  for (size_t i = g.nodes.size(); i-- > 0;) {
    Node& n = g.nodes[i];
    int64_t from = kUnneeded;
    for (ValueId v : n.outputs()) from = std::min(from, need[size_t(v)]);
    if (from == kUnneeded && !n.side_effect) {
      gone[i] = true;
      ++stats.dead_nodes;
      continue;
    }
    n.row_from = n.kind == OpKind::Attention ? 0 : std::max(n.row_from, std::min(from, g.m));
    stats.dead_rows += n.row_from;
    for (ValueId v : n.outputs()) g.values[size_t(v)].row0 = n.row_from;
    for (ValueId v : n.in) need[size_t(v)] = std::min(need[size_t(v)], n.row_from);
  }
  compact(g, gone);
}

void fuse(Graph& g, PassStats& stats) {
  // 1. Matmuls sharing their input: Q/K/V, gate/up.
  const int merged = merge_matmuls(g);
  std::vector<bool> gone(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (n.kind == OpKind::MatMul && n.mats.size() == 3) ++stats.fused_qkv;
    // 2. SwiGLU of the two outputs of one matmul, read by nothing else.
    if (n.kind == OpKind::SwiGlu) {
      const auto [w, k] = matmul_writer(g, n.in[0]);
      const auto [w2, k2] = matmul_writer(g, n.in[1]);
      if (w < 0 || w != w2 || gone[size_t(w)]) continue;
      Node& mm = g.nodes[size_t(w)];
      if (mm.mats.size() != 2 || k != 0 || k2 != 1 || mm.row_from != n.row_from ||
          mm.mats[0].rope || mm.mats[1].rope || mm.mats[0].w.rows != mm.mats[1].w.rows ||
          g.readers(n.in[0]).size() != 1 || g.readers(n.in[1]).size() != 1)
        continue;
      mm.glu = true;
      mm.mats[0].out = n.out;
      mm.mats[1].out = -1;
      gone[i] = true;
      ++stats.fused_glu;
    }
    // 3. RoPE of a matmul's output, read by nothing else, folded into its write (the
    // write rotates adjacent pairs: a Neox rope stays a node of its own).
    if (n.kind == OpKind::Rope) {
      const RopeParams& rp = g.ropes[size_t(n.rope_id)];
      const auto [w, k] = matmul_writer(g, n.in[0]);
      if (w < 0 || gone[size_t(w)] || g.readers(n.in[0]).size() != 1 || rp.d % 2 != 0 ||
          rp.spec.style != kernels::RopeStyle::Adjacent)
        continue;
      Node& mm = g.nodes[size_t(w)];
      if (mm.glu || mm.row_from != n.row_from) continue;
      bool other_rope = false;  // one rope table per node
      for (const MatSpec& o : mm.mats) other_rope |= o.rope && mm.rope_id != n.rope_id;
      if (other_rope) continue;
      MatSpec& s = mm.mats[size_t(k)];
      s.out = n.out;
      s.rope = true;
      s.rope_heads = n.rope_heads;
      mm.rope_id = n.rope_id;
      gone[i] = true;
      ++stats.fused_rope;
    }
  }
  compact(g, gone);
  // 4. RMSNorm read only by one matmul: the matmul normalizes its input rows itself.
  gone.assign(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (n.kind != OpKind::RmsNorm || n.norm_cols != 0) continue;
    const auto r = g.readers(n.out);
    if (r.size() != 1) continue;
    Node& mm = g.nodes[size_t(r[0])];
    if (mm.kind != OpKind::MatMul || mm.norm_w || mm.row_from != n.row_from) continue;
    mm.norm_w = n.norm_w;
    mm.eps = n.eps;
    mm.in[0] = n.in[0];
    gone[i] = true;
    ++stats.fused_norm;
  }
  compact(g, gone);
  (void)merged;
  g.validate();
}

}  // namespace tandem::graph
