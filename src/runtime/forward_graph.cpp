#include "tandem/runtime/forward_graph.hpp"

#include <fmt/format.h>

#include <cmath>

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

// The rotary embeddings of the model: [0] every layer's, or the global layers' where
// local (sliding-window) layers rotate with a base and scale of their own ([1]).
std::vector<graph::RopeParams> model_ropes(const Model& model) {
  const HParams& hp = model.hparams();
  kernels::RopeSpec rope;
  rope.n_rot = int(hp.n_rot);
  rope.freq_base = hp.rope_freq_base;
  rope.freq_scale = hp.rope_freq_scale;
  rope.freq_factors = model.rope_freqs;
  rope.style = hp.rope_neox ? kernels::RopeStyle::Neox : kernels::RopeStyle::Adjacent;
  std::vector<graph::RopeParams> ropes{{int(hp.head_dim), rope}};
  if (!hp.local_layers.empty()) {
    rope.freq_base = hp.rope_freq_base_local;
    rope.freq_scale = hp.rope_freq_scale_local;
    ropes.push_back({int(hp.head_dim), rope});
  }
  return ropes;
}

graph::Graph build_forward_graph(const Model& model, int64_t m, int64_t out_from) {
  const HParams& hp = model.hparams();
  TD_CHECK(m >= 0 && out_from >= 0 && out_from <= m);
  const int64_t D = hp.n_embd, Q = hp.q_dim(), KV = hp.kv_dim(), F = hp.n_ff;
  graph::Graph g;
  g.m = m;
  g.ropes = model_ropes(model);

  ValueId x = g.add_value("x", m, D);
  graph::Node& embed = op(g, OpKind::Embed, "embed", "embed", {}, x);
  embed.mats.push_back({model.tok_embd, nullptr, x});
  if (hp.embed_scale) embed.scale = std::sqrt(float(D));
  // RMSNorm of `in` into a new value (of runs of `cols` values when cols > 0).
  auto rmsnorm = [&](const char* phase, std::string name, ValueId in, const float* w,
                     int64_t cols = 0) {
    const graph::Value& v = g.values[size_t(in)];
    const ValueId out = g.add_value(name, v.rows, v.cols);
    graph::Node& n = op(g, OpKind::RmsNorm, phase, std::move(name), {in}, out);
    n.norm_w = w;
    n.eps = hp.rms_eps;
    n.norm_cols = cols;
    return out;
  };
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    const LayerWeights& w = model.layers[size_t(l)];
    auto val = [&](const char* name, int64_t cols) {
      return g.add_value(fmt::format("L{}.{}", l, name), m, cols);
    };
    auto nm = [&](const char* name) { return fmt::format("L{}.{}", l, name); };
    const ValueId h = rmsnorm("qkv", nm("attn_norm"), x, w.attn_norm);
    ValueId q = val("q", Q), k = val("k", KV);
    const ValueId v = val("v", KV);
    matmul(g, "qkv", nm("wq"), h, w.wq, w.bq, q);
    matmul(g, "qkv", nm("wk"), h, w.wk, w.bk, k);
    matmul(g, "qkv", nm("wv"), h, w.wv, w.bv, v);
    if (hp.qk_norm) {
      q = rmsnorm("qkv", nm("q_norm"), q, w.q_norm, hp.head_dim);
      k = rmsnorm("qkv", nm("k_norm"), k, w.k_norm, hp.head_dim);
    }
    const int rope_id = hp.layer_local(l) ? 1 : 0;
    const ValueId qr = val("q_rope", Q), kr = val("k_rope", KV);
    graph::Node& rq = op(g, OpKind::Rope, "qkv", nm("rope_q"), {q}, qr);
    rq.rope_heads = int(hp.n_head);
    rq.rope_id = rope_id;
    graph::Node& rk = op(g, OpKind::Rope, "qkv", nm("rope_k"), {k}, kr);
    rk.rope_heads = int(hp.n_head_kv);
    rk.rope_id = rope_id;
    const ValueId att = val("attn", Q);
    graph::Node& a = op(g, OpKind::Attention, "attention", nm("attention"), {qr, kr, v}, att);
    a.layer = int(l);
    a.side_effect = true;  // stores K/V in the cache (and talks to other ranks)
    ValueId o = val("attn_out", D);
    matmul(g, "out+ffn", nm("wo"), att, w.wo, nullptr, o);
    if (hp.post_norms) o = rmsnorm("out+ffn", nm("post_attn_norm"), o, w.post_attn_norm);
    const ValueId x1 = val("x_attn", D);
    op(g, OpKind::Add, "out+ffn", nm("add_attn"), {x, o}, x1);
    const ValueId h2 = rmsnorm("out+ffn", nm("ffn_norm"), x1, w.ffn_norm);
    const ValueId gate = val("gate", F), up = val("up", F), act = val("act", F);
    matmul(g, "out+ffn", nm("w_gate"), h2, w.w_gate, nullptr, gate);
    matmul(g, "out+ffn", nm("w_up"), h2, w.w_up, nullptr, up);
    if (hp.gelu_ffn)
      op(g, OpKind::GeGlu, "out+ffn", nm("geglu"), {gate, up}, act);
    else
      op(g, OpKind::SwiGlu, "out+ffn", nm("swiglu"), {gate, up}, act);
    ValueId down = val("ffn_out", D);
    matmul(g, "out+ffn", nm("w_down"), act, w.w_down, nullptr, down);
    if (hp.post_norms) down = rmsnorm("out+ffn", nm("post_ffn_norm"), down, w.post_ffn_norm);
    const ValueId x2 = val("x_ffn", D);
    op(g, OpKind::Add, "out+ffn", nm("add_ffn"), {x1, down}, x2);
    x = x2;
  }
  if (out_from < m) {
    const size_t first = g.nodes.size();
    const ValueId hn = rmsnorm("logits", "output_norm", x, model.output_norm);
    const ValueId logits = g.add_value("logits", m, hp.n_vocab);
    g.values[size_t(logits)].external = true;
    g.values[size_t(logits)].row0 = out_from;
    if (hp.final_softcap > 0.0f) {
      const ValueId raw = g.add_value("logits_raw", m, hp.n_vocab);
      matmul(g, "logits", "output", hn, model.output, nullptr, raw);
      op(g, OpKind::SoftCap, "logits", "final_softcap", {raw}, logits).cap = hp.final_softcap;
      g.values[size_t(raw)].row0 = out_from;
    } else {
      matmul(g, "logits", "output", hn, model.output, nullptr, logits);
    }
    // The output rows only: without the dead-row pass the unfused graph still computes
    // them alone (as the graph of any engine would).
    for (size_t i = first; i < g.nodes.size(); ++i) g.nodes[i].row_from = out_from;
    g.values[size_t(hn)].row0 = out_from;
  }
  g.validate();
  return g;
}

}  // namespace tandem
