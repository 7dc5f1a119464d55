#include "tandem/train/model_grad.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "tandem/core/error.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/kernels/bf16_matmul.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/train/bf16_params.hpp"
#include "tandem/train/grad_reduce.hpp"

namespace tandem::train {
namespace {

struct FreeFloats {
  void operator()(float* p) const { std::free(p); }
};
using Floats = std::unique_ptr<float, FreeFloats>;

Floats alloc_floats(int64_t n) {
  const size_t bytes = (size_t(std::max<int64_t>(n, 1)) * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) fail(ErrorKind::Resource, "train: out of memory for {} bytes of activations", bytes);
  return Floats(p);
}

struct Dims {
  int64_t D, H, G, d, F, V, L, Hd, Gd;
  explicit Dims(const SynthSpec& s)
      : D(s.n_embd), H(s.n_head), G(s.n_head_kv), d(s.head_dim > 0 ? s.head_dim : s.n_embd / s.n_head),
        F(s.n_ff), V(s.n_vocab), L(s.n_layer), Hd(H * d), Gd(G * d) {}
  // Floats per token of one layer's saved activations (q, k, v, attention out and lse, h,
  // gate, up).
  int64_t saved() const { return 2 * Hd + 2 * Gd + H + D + 2 * F; }
  // Floats per token of the scratch buffers (xn, tmp, dres, dxn, act, dup, d_ao, dq, dk,
  // dv).
  int64_t scratch() const { return 4 * D + 2 * F + 2 * Hd + 2 * Gd; }
};

// Tokens per logits block of the loss head: at 256, w is read a quarter as often as at 64
// (the product runs at 76% of the FMA peak against 62%, measured at V = 32000).
constexpr int64_t kLossBlock = 256;

}  // namespace

parallel::AttnShape attn_shape(const SynthSpec& spec) {
  const Dims m(spec);
  parallel::AttnShape a;
  a.H = int(m.H);
  a.G = int(m.G);
  a.d = int(m.d);
  a.scale = 1.0f / std::sqrt(float(m.d));
  return a;
}

size_t activation_bytes(const SynthSpec& spec, int64_t n, bool checkpoint_layers) {
  const Dims m(spec);
  const int64_t sets = checkpoint_layers ? 1 : m.L;
  const int64_t per_token = (m.L + 1) * m.D + sets * m.saved() + m.scratch();
  return size_t(n * per_token + kLossBlock * m.V) * sizeof(float);
}

struct ModelGrad::Impl {
  ParamSet& p;
  parallel::AttentionGrad& attn;
  kernels::ThreadPool& pool;
  Dims m;
  int64_t cap;
  bool ckpt;
  float eps;
  kernels::RopeSpec rope;
  // Saved activations of one layer.
  struct Saved {
    float *q, *k, *v, *ao, *lse, *h, *gate, *up;
  };
  std::vector<Floats> owned;
  std::vector<float*> xs;  // [L+1] layer inputs (xs[L]: the last layer's output)
  std::vector<Saved> saved;
  float *xn, *tmp, *dres, *dxn, *act, *dup, *d_ao, *dq, *dk, *dv;
  const Bf16Params* bf16 = nullptr;  // set: the layers' products in BF16

  Impl(ParamSet& params, parallel::AttentionGrad& a, kernels::ThreadPool& tp, int64_t max_tokens,
       bool checkpoint)
      : p(params), attn(a), pool(tp), m(params.spec()), cap(max_tokens), ckpt(checkpoint),
        eps(params.spec().rms_eps) {
    rope.n_rot = int(m.d);
    rope.freq_base = params.spec().rope_freq_base;
    rope.style = kernels::RopeStyle::Adjacent;
    auto take = [&](int64_t per_token) {
      owned.push_back(alloc_floats(cap * per_token));
      return owned.back().get();
    };
    for (int64_t l = 0; l <= m.L; ++l) xs.push_back(take(m.D));
    for (int64_t s = 0; s < (ckpt ? 1 : m.L); ++s)
      saved.push_back({take(m.Hd), take(m.Gd), take(m.Gd), take(m.Hd), take(m.H), take(m.D),
                       take(m.F), take(m.F)});
    xn = take(m.D);
    tmp = take(m.D);
    dres = take(m.D);
    dxn = take(m.D);
    act = take(m.F);
    dup = take(m.F);
    d_ao = take(m.Hd);
    dq = take(m.Hd);
    dk = take(m.Gd);
    dv = take(m.Gd);
  }

  Saved& saved_of(int64_t l) { return saved[size_t(ckpt ? 0 : l)]; }

  GradSink* sink = nullptr;  // step()'s, while its backward runs
  void progress() {
    if (sink) sink->progress();
  }

  // The layers' products: f32, or BF16 on the packed copies (set_bf16).
  void mm(const float* w, int64_t rows, int64_t cols, const float* x, int64_t n, float* y) {
    if (const kernels::Bf16Matrix* b = bf16 ? bf16->find(w) : nullptr)
      return kernels::bf16_matmul(*b, x, n, y, pool);
    kernels::matmul(f32_matrix(w, rows, cols), x, n, y, pool);
  }
  void matmul_dx(const float* w, int64_t rows, int64_t cols, const float* dy, int64_t n,
                 float* dx, bool accumulate, kernels::ThreadPool& tp) {
    if (const kernels::Bf16Matrix* b = bf16 ? bf16->find(w) : nullptr)
      return kernels::bf16_matmul_dx(*b, dy, n, dx, accumulate, tp);
    kernels::matmul_dx(w, rows, cols, dy, n, dx, accumulate, tp);
  }
  void matmul_dw(const float* dy, const float* x, int64_t n, int64_t rows, int64_t cols,
                 float* dw, kernels::ThreadPool& tp) {
    if (bf16) return kernels::bf16_matmul_dw(dy, x, n, rows, cols, dw, tp);
    kernels::matmul_dw(dy, x, n, rows, cols, dw, tp);
  }

  parallel::AttnGradStep attn_step(const SeqShard& s, Saved& a) {
    parallel::AttnGradStep st;
    st.n = s.size();
    st.pos = s.pos.data();
    st.q = a.q;
    st.k = a.k;
    st.v = a.v;
    st.out = a.ao;
    st.lse = a.lse;
    return st;
  }

  void embed(const SeqShard& s) {
    kernels::get_rows(f32_matrix(p.tok_embd(), m.V, m.D), s.tokens.data(), s.size(), xs[0]);
  }

  // Layer l from xs[l] into `out` ([n][D]; null: not wanted), keeping its activations in a.
  void layer_forward(int64_t l, const SeqShard& s, Saved& a, float* out) {
    const int64_t n = s.size();
    const ParamSet::Layer w = p.layer(l);
    const float* x = xs[size_t(l)];
    kernels::rmsnorm(x, w.attn_norm, xn, n, m.D, eps, pool);
    mm(w.wq, m.Hd, m.D, xn, n, a.q);
    mm(w.wk, m.Gd, m.D, xn, n, a.k);
    mm(w.wv, m.Gd, m.D, xn, n, a.v);
    kernels::rope(a.q, n, int(m.H), int(m.d), rope, s.pos.data(), pool);
    kernels::rope(a.k, n, int(m.G), int(m.d), rope, s.pos.data(), pool);
    attn.forward(attn_step(s, a));
    mm(w.wo, m.D, m.Hd, a.ao, n, tmp);
    std::memcpy(a.h, x, size_t(n * m.D) * sizeof(float));
    kernels::add(a.h, tmp, n * m.D);
    kernels::rmsnorm(a.h, w.ffn_norm, xn, n, m.D, eps, pool);
    mm(w.gate, m.F, m.D, xn, n, a.gate);
    mm(w.up, m.F, m.D, xn, n, a.up);
    kernels::swiglu(a.gate, a.up, act, n * m.F);
    if (!out) return;  // a recomputation for the backward: the output is not needed
    mm(w.down, m.D, m.F, act, n, out);
    kernels::add(out, a.h, n * m.D);
  }

  // dres holds d(loss)/d(output of layer l) and becomes d(loss)/d(input of layer l).
  void layer_backward(int64_t l, const SeqShard& s, ParamSet& g) {
    const int64_t n = s.size();
    const ParamSet::Layer w = p.layer(l);
    const ParamSet::Layer gw = g.layer(l);
    Saved& a = saved_of(l);
    if (ckpt) layer_forward(l, s, a, nullptr);
    const float* x = xs[size_t(l)];
    // FFN: x_next = h + down(silu(gate) * up), gate/up = W (RMSNorm(h) * ffn_norm).
    kernels::rmsnorm(a.h, w.ffn_norm, xn, n, m.D, eps, pool);
    kernels::swiglu(a.gate, a.up, act, n * m.F);
    matmul_dw(dres, act, n, m.D, m.F, gw.down, pool);
    progress();
    matmul_dx(w.down, m.D, m.F, dres, n, act, false, pool);
    kernels::swiglu_backward(a.gate, a.up, act, act, dup, n * m.F);
    matmul_dx(w.gate, m.F, m.D, act, n, dxn, false, pool);
    matmul_dx(w.up, m.F, m.D, dup, n, dxn, true, pool);
    matmul_dw(act, xn, n, m.F, m.D, gw.gate, pool);
    matmul_dw(dup, xn, n, m.F, m.D, gw.up, pool);
    progress();
    kernels::rmsnorm_backward(a.h, w.ffn_norm, dxn, dxn, gw.ffn_norm, n, m.D, eps, pool);
    kernels::add(dres, dxn, n * m.D);
    // Attention: h = x + wo(attn(rope(wq xn), rope(wk xn), wv xn)), xn = RMSNorm(x).
    matmul_dx(w.wo, m.D, m.Hd, dres, n, d_ao, false, pool);
    matmul_dw(dres, a.ao, n, m.D, m.Hd, gw.wo, pool);
    progress();
    attn.backward(attn_step(s, a), d_ao, dq, dk, dv);
    kernels::rope_backward(dq, n, int(m.H), int(m.d), rope, s.pos.data(), pool);
    kernels::rope_backward(dk, n, int(m.G), int(m.d), rope, s.pos.data(), pool);
    kernels::rmsnorm(x, w.attn_norm, xn, n, m.D, eps, pool);
    matmul_dx(w.wq, m.Hd, m.D, dq, n, dxn, false, pool);
    matmul_dx(w.wk, m.Gd, m.D, dk, n, dxn, true, pool);
    matmul_dx(w.wv, m.Gd, m.D, dv, n, dxn, true, pool);
    matmul_dw(dq, xn, n, m.Hd, m.D, gw.wq, pool);
    progress();
    matmul_dw(dk, xn, n, m.Gd, m.D, gw.wk, pool);
    matmul_dw(dv, xn, n, m.Gd, m.D, gw.wv, pool);
    kernels::rmsnorm_backward(x, w.attn_norm, dxn, dxn, gw.attn_norm, n, m.D, eps, pool);
    kernels::add(dres, dxn, n * m.D);
  }

  void check(const SeqShard& s) const {
    TD_CHECK(s.size() <= cap && s.targets.size() == s.tokens.size() &&
             s.pos.size() == s.tokens.size());
    for (int32_t t : s.tokens) TD_CHECK(t >= 0 && t < m.V);
    for (int32_t t : s.targets) TD_CHECK(t < m.V);
  }

  // The loss head on xs[L]: RMSNorm, output product, cross-entropy; with grads, dres
  // becomes d(loss)/d(xs[L]).
  LossSum head(const SeqShard& s, float grad_scale, ParamSet* g) {
    const int64_t n = s.size();
    LossSum r;
    if (n == 0) return r;  // a rank with no tokens of this sequence (N < P)
    kernels::rmsnorm(xs[size_t(m.L)], p.output_norm(), xn, n, m.D, eps, pool);
    kernels::CrossEntropyArgs ce;
    ce.x = xn;
    ce.w = p.output();
    ce.target = s.targets.data();
    ce.m = n;
    ce.D = m.D;
    ce.V = m.V;
    ce.grad_scale = grad_scale;
    ce.dx = g ? dxn : nullptr;
    ce.dw = g ? g->output() : nullptr;
    ce.block_tokens = kLossBlock;
    ce.correct = &r.correct;
    r.loss = kernels::cross_entropy(ce, pool);
    for (int32_t t : s.targets) r.counted += t >= 0;
    if (g)
      kernels::rmsnorm_backward(xs[size_t(m.L)], p.output_norm(), dxn, dres, g->output_norm(), n,
                                m.D, eps, pool);
    return r;
  }
};

ModelGrad::ModelGrad(ParamSet& params, parallel::AttentionGrad& attn, kernels::ThreadPool& pool,
                     int64_t max_tokens, bool checkpoint_layers)
    : impl_(std::make_unique<Impl>(params, attn, pool, max_tokens, checkpoint_layers)) {}

ModelGrad::~ModelGrad() = default;

LossSum ModelGrad::step(const SeqShard& s, float grad_scale, ParamSet& grads, GradSink* sink) {
  Impl& I = *impl_;
  I.check(s);
  I.embed(s);
  for (int64_t l = 0; l < I.m.L; ++l) I.layer_forward(l, s, I.saved_of(l), I.xs[size_t(l + 1)]);
  const LossSum r = I.head(s, grad_scale, &grads);
  I.sink = sink;
  if (sink) {
    sink->ready(grads.span("output.weight"));
    sink->ready(grads.span("output_norm.weight"));
  }
  for (int64_t l = I.m.L - 1; l >= 0; --l) {
    I.layer_backward(l, s, grads);
    if (sink)
      for (const ParamSet::Span& sp : grads.layer_spans(l)) sink->ready(sp);
  }
  kernels::get_rows_backward(s.tokens.data(), s.size(), I.dres, I.m.D, grads.tok_embd());
  if (sink) sink->ready(grads.span("token_embd.weight"));
  I.sink = nullptr;
  return r;
}

void ModelGrad::set_bf16(const Bf16Params* b) { impl_->bf16 = b; }

LossSum ModelGrad::evaluate(const SeqShard& s) {
  Impl& I = *impl_;
  I.check(s);
  I.embed(s);
  for (int64_t l = 0; l < I.m.L; ++l) I.layer_forward(l, s, I.saved_of(l), I.xs[size_t(l + 1)]);
  return I.head(s, 1.0f, nullptr);
}

}  // namespace tandem::train
