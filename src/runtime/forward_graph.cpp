#include "tandem/runtime/forward_graph.hpp"

#include <fmt/format.h>

#include "tandem/core/error.hpp"

namespace tandem {

using graph::OpKind;
using graph::ValueId;

namespace {

// A matmul node of one weight.
void matmul(graph::Graph& g, const char* phase, std::string name, ValueId in,
            const MatrixView& w, const float* bias, ValueId out) {
  graph::Node& n = g.add_node(OpKind::MatMul, std::move(name), {in}, -1);
  n.phase = phase;
  n.mats.push_back({w, bias, out, false, 0});
}

graph::Node& op(graph::Graph& g, OpKind kind, const char* phase, std::string name,
                std::vector<ValueId> in, ValueId out) {
  graph::Node& n = g.add_node(kind, std::move(name), std::move(in), out);
  n.phase = phase;
  return n;
}

}  // namespace

graph::Graph build_forward_graph(const Model& model, int64_t m, int64_t out_from) {
  const HParams& hp = model.hparams();
  TD_CHECK(m >= 0 && out_from >= 0 && out_from <= m);
  const int64_t D = hp.n_embd, Q = hp.q_dim(), KV = hp.kv_dim(), F = hp.n_ff;
  graph::Graph g;
  g.m = m;
  g.rope = {int(hp.head_dim), int(hp.n_rot), hp.rope_freq_base};

  ValueId x = g.add_value("x", m, D);
  op(g, OpKind::Embed, "embed", "embed", {}, x).mats.push_back({model.tok_embd, nullptr, x});
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    const LayerWeights& w = model.layers[size_t(l)];
    auto val = [&](const char* name, int64_t cols) {
      return g.add_value(fmt::format("L{}.{}", l, name), m, cols);
    };
    auto nm = [&](const char* name) { return fmt::format("L{}.{}", l, name); };
    const ValueId h = val("attn_norm", D);
    op(g, OpKind::RmsNorm, "qkv", nm("attn_norm"), {x}, h).norm_w = w.attn_norm;
    g.nodes.back().eps = hp.rms_eps;
    const ValueId q = val("q", Q), k = val("k", KV), v = val("v", KV);
    matmul(g, "qkv", nm("wq"), h, w.wq, w.bq, q);
    matmul(g, "qkv", nm("wk"), h, w.wk, w.bk, k);
    matmul(g, "qkv", nm("wv"), h, w.wv, w.bv, v);
    const ValueId qr = val("q_rope", Q), kr = val("k_rope", KV);
    op(g, OpKind::Rope, "qkv", nm("rope_q"), {q}, qr).rope_heads = int(hp.n_head);
    op(g, OpKind::Rope, "qkv", nm("rope_k"), {k}, kr).rope_heads = int(hp.n_head_kv);
    const ValueId att = val("attn", Q);
    graph::Node& a = op(g, OpKind::Attention, "attention", nm("attention"), {qr, kr, v}, att);
    a.layer = int(l);
    a.side_effect = true;  // stores K/V in the cache (and talks to other ranks)
    const ValueId o = val("attn_out", D);
    matmul(g, "out+ffn", nm("wo"), att, w.wo, nullptr, o);
    const ValueId x1 = val("x_attn", D);
    op(g, OpKind::Add, "out+ffn", nm("add_attn"), {x, o}, x1);
    const ValueId h2 = val("ffn_norm", D);
    op(g, OpKind::RmsNorm, "out+ffn", nm("ffn_norm"), {x1}, h2).norm_w = w.ffn_norm;
    g.nodes.back().eps = hp.rms_eps;
    const ValueId gate = val("gate", F), up = val("up", F), act = val("act", F);
    matmul(g, "out+ffn", nm("w_gate"), h2, w.w_gate, nullptr, gate);
    matmul(g, "out+ffn", nm("w_up"), h2, w.w_up, nullptr, up);
    op(g, OpKind::SwiGlu, "out+ffn", nm("swiglu"), {gate, up}, act);
    const ValueId down = val("ffn_out", D);
    matmul(g, "out+ffn", nm("w_down"), act, w.w_down, nullptr, down);
    const ValueId x2 = val("x_ffn", D);
    op(g, OpKind::Add, "out+ffn", nm("add_ffn"), {x1, down}, x2);
    x = x2;
  }
  if (out_from < m) {
    const ValueId hn = g.add_value("output_norm", m, D);
    op(g, OpKind::RmsNorm, "logits", "output_norm", {x}, hn).norm_w = model.output_norm;
    g.nodes.back().eps = hp.rms_eps;
    const ValueId logits = g.add_value("logits", m, hp.n_vocab);
    g.values[size_t(logits)].external = true;
    g.values[size_t(logits)].row0 = out_from;
    matmul(g, "logits", "output", hn, model.output, nullptr, logits);
    // The output rows only: without the dead-row pass the unfused graph still computes
    // them alone (as the graph of any engine would).
    for (auto* n : {&g.nodes[g.nodes.size() - 2], &g.nodes.back()}) n->row_from = out_from;
    g.values[size_t(hn)].row0 = out_from;
  }
  g.validate();
  return g;
}

}  // namespace tandem
