#include "tandem/runtime/engine.hpp"

#include <cmath>

#include "tandem/core/error.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem {

namespace k = kernels;

parallel::AttnShape shape_of(const HParams& h) {
  parallel::AttnShape s;
  s.H = int(h.n_head);
  s.G = int(h.n_head_kv);
  s.d = int(h.head_dim);
  s.scale = 1.0f / std::sqrt(float(h.head_dim));
  return s;
}

Engine::Engine(const Model& model, kernels::ThreadPool& pool, int64_t chunk)
    : model_(model),
      pool_(pool),
      chunk_(chunk),
      local_(shape_of(model.hparams()), pool),
      attn_(&local_) {
  TD_CHECK(chunk_ > 0);
}

parallel::AttnShape Engine::attn_shape() const { return shape_of(model_.hparams()); }

size_t Engine::activation_bytes() const {
  size_t n = 0;
  for (const auto* b : {&x_, &h_, &q_, &k_, &v_, &attn_out_, &gate_, &up_}) n += b->capacity();
  return n * sizeof(float);
}

void Engine::set_attention(parallel::SequenceAttention* attn) { attn_ = attn ? attn : &local_; }

KVCache Engine::make_cache(int64_t capacity) const {
  const auto& h = model_.hparams();
  return KVCache(h.n_layer, capacity, h.kv_dim());
}

void Engine::forward(KVCache& cache, std::span<const int32_t> ids, std::span<const int32_t> pos,
                     int64_t n_out, float* logits) {
  const auto& h = model_.hparams();
  const int64_t n = int64_t(ids.size());
  TD_CHECK(pos.size() == ids.size() && n_out >= 0 && n_out <= n);
  for (int32_t id : ids)
    if (id < 0 || id >= h.n_vocab) bad_input("token id {} is out of range [0, {})", id, h.n_vocab);
  const int64_t out_begin = n - n_out;
  const int64_t chunk = attn_->lockstep() ? std::max<int64_t>(n, 1) : chunk_;
  for (int64_t s = 0; s < n || (s == 0 && attn_->lockstep()); s += chunk) {
    const int64_t m = std::min(chunk, n - s);
    // Rows of this chunk that need logits, and where they go.
    const int64_t from = std::max<int64_t>(out_begin - s, 0);
    float* dst = from < m ? logits + (s + from - out_begin) * h.n_vocab : nullptr;
    forward_chunk(cache, ids.data() + s, pos.data() + s, m, from, dst);
  }
}

void Engine::forward_chunk(KVCache& cache, const int32_t* ids, const int32_t* pos, int64_t m,
                           int64_t out_from, float* logits) {
  const auto& hp = model_.hparams();
  const int64_t D = hp.n_embd, Q = hp.q_dim(), KV = hp.kv_dim(), F = hp.n_ff;
  auto ensure = [](std::vector<float>& b, int64_t n) {
    if (b.size() < size_t(n)) b.resize(size_t(n));
    return b.data();
  };
  float* x = ensure(x_, m * D);
  float* h = ensure(h_, m * D);
  float* q = ensure(q_, m * Q);
  float* kc = ensure(k_, m * KV);
  float* vc = ensure(v_, m * KV);
  float* attn = ensure(attn_out_, m * Q);
  float* gate = ensure(gate_, m * F);
  float* up = ensure(up_, m * F);

  const int64_t slot = attn_->begin_step(cache, m, pos);
  if (reference_) {
    k::ref::get_rows(model_.tok_embd, ids, m, x);
  } else {
    k::get_rows(model_.tok_embd, ids, m, x);
  }

  for (int64_t l = 0; l < hp.n_layer; ++l) {
    const auto& w = model_.layers[size_t(l)];
    {
      const TraceSpan span(trace_, "qkv", "compute");
      rmsnorm(x, w.attn_norm, h, m);
      matmul(w.wq, h, m, q, w.bq);
      matmul(w.wk, h, m, kc, w.bk);
      matmul(w.wv, h, m, vc, w.bv);
      rope(q, m, int(hp.n_head), pos);
      rope(kc, m, int(hp.n_head_kv), pos);
    }
    {
      const TraceSpan span(trace_, "attention", "compute");
      parallel::AttnStep step;
      step.layer = l;
      step.m = m;
      step.q = q;
      step.k = kc;
      step.v = vc;
      step.pos = pos;
      step.out = attn;
      attn_->attend(cache, slot, step);
    }
    const TraceSpan span(trace_, "out+ffn", "compute");
    matmul(w.wo, attn, m, h);
    (reference_ ? k::ref::add : k::add)(x, h, m * D);
    rmsnorm(x, w.ffn_norm, h, m);
    matmul(w.w_gate, h, m, gate);
    matmul(w.w_up, h, m, up);
    (reference_ ? k::ref::swiglu : k::swiglu)(gate, up, gate, m * F);
    matmul(w.w_down, gate, m, h);
    (reference_ ? k::ref::add : k::add)(x, h, m * D);
  }

  if (logits && out_from < m) {
    const TraceSpan span(trace_, "logits", "compute");
    const int64_t n = m - out_from;
    rmsnorm(x + out_from * D, model_.output_norm, h, n);
    matmul(model_.output, h, n, logits);
  }
}

void Engine::set_reference_kernels(bool on) {
  reference_ = on;
  local_.set_reference(on);
}

void Engine::matmul(const MatrixView& w, const float* x, int64_t m, float* y, const float* bias) {
  if (reference_) {
    k::ref::matmul(w, x, m, y, bias);
  } else {
    k::matmul(w, x, m, y, pool_, bias);
  }
}

void Engine::rmsnorm(const float* x, const float* w, float* y, int64_t m) {
  const auto& hp = model_.hparams();
  if (reference_) {
    k::ref::rmsnorm(x, w, y, m, hp.n_embd, hp.rms_eps);
  } else {
    k::rmsnorm(x, w, y, m, hp.n_embd, hp.rms_eps, pool_);
  }
}

void Engine::rope(float* x, int64_t m, int heads, const int32_t* pos) {
  const auto& hp = model_.hparams();
  if (reference_) {
    k::ref::rope(x, m, heads, int(hp.head_dim), int(hp.n_rot), pos, hp.rope_freq_base);
  } else {
    k::rope(x, m, heads, int(hp.head_dim), int(hp.n_rot), pos, hp.rope_freq_base, pool_);
  }
}

}  // namespace tandem
