#include "tandem/runtime/engine.hpp"

#include <cmath>

#include "tandem/core/error.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem {

namespace k = kernels;

Engine::Engine(const Model& model, kernels::ThreadPool& pool, int64_t chunk)
    : model_(model), pool_(pool), chunk_(chunk) {
  TD_CHECK(chunk_ > 0);
}

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
  for (int64_t s = 0; s < n; s += chunk_) {
    const int64_t m = std::min(chunk_, n - s);
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
  float* attn = ensure(attn_, m * Q);
  float* gate = ensure(gate_, m * F);
  float* up = ensure(up_, m * F);

  const int64_t slot = cache.append(m, pos);
  k::get_rows(model_.tok_embd, ids, m, x);

  for (int64_t l = 0; l < hp.n_layer; ++l) {
    const auto& w = model_.layers[size_t(l)];
    k::rmsnorm(x, w.attn_norm, h, m, D, hp.rms_eps, pool_);
    float* kc = cache.k(l, slot);
    float* vc = cache.v(l, slot);
    k::matmul(w.wq, h, m, q, pool_, w.bq);
    k::matmul(w.wk, h, m, kc, pool_, w.bk);
    k::matmul(w.wv, h, m, vc, pool_, w.bv);
    k::rope(q, m, int(hp.n_head), int(hp.head_dim), int(hp.n_rot), pos, hp.rope_freq_base, pool_);
    k::rope(kc, m, int(hp.n_head_kv), int(hp.head_dim), int(hp.n_rot), pos, hp.rope_freq_base,
            pool_);

    k::AttentionArgs a;
    a.q = q;
    a.q_pos = pos;
    a.n_q = m;
    a.k = cache.k(l, 0);
    a.v = cache.v(l, 0);
    a.kv_pos = cache.positions();
    a.n_kv = cache.size();
    a.kv_stride = KV;
    a.H = int(hp.n_head);
    a.G = int(hp.n_head_kv);
    a.d = int(hp.head_dim);
    a.scale = 1.0f / std::sqrt(float(hp.head_dim));
    a.causal = true;
    a.out = attn;
    k::attention(a, pool_);

    k::matmul(w.wo, attn, m, h, pool_);
    k::add(x, h, m * D);

    k::rmsnorm(x, w.ffn_norm, h, m, D, hp.rms_eps, pool_);
    k::matmul(w.w_gate, h, m, gate, pool_);
    k::matmul(w.w_up, h, m, up, pool_);
    k::swiglu(gate, up, gate, m * F);
    k::matmul(w.w_down, gate, m, h, pool_);
    k::add(x, h, m * D);
  }

  if (logits && out_from < m) {
    const int64_t n = m - out_from;
    k::rmsnorm(x + out_from * D, model_.output_norm, h, n, D, hp.rms_eps, pool_);
    k::matmul(model_.output, h, n, logits, pool_);
  }
}

}  // namespace tandem
