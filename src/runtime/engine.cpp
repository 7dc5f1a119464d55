#include "tandem/runtime/engine.hpp"

#include <algorithm>
#include <cmath>

#include "tandem/core/error.hpp"
#include "tandem/runtime/forward_graph.hpp"

namespace tandem {

parallel::AttnShape shape_of(const HParams& h) {
  parallel::AttnShape s;
  s.H = int(h.n_head);
  s.G = int(h.n_head_kv);
  s.d = int(h.head_dim);
  s.scale = h.query_scale();
  s.softcap = h.attn_softcap;
  return s;
}

Engine::Engine(const Model& model, kernels::ThreadPool& pool, int64_t chunk)
    : model_(model),
      pool_(pool),
      chunk_(chunk),
      local_(shape_of(model.hparams()), pool),
      solo_pool_(std::make_unique<kernels::ThreadPool>(1)),
      solo_(shape_of(model.hparams()), *solo_pool_),
      attn_(&local_) {
  TD_CHECK(chunk_ > 0);
}

parallel::AttnShape Engine::attn_shape() const { return shape_of(model_.hparams()); }

parallel::AttnKernel Engine::attention_kernel() const {
  if (opt_.reference_kernels) return parallel::AttnKernel::Reference;
  return opt_.flash_attention ? parallel::AttnKernel::Flash : parallel::AttnKernel::Materialized;
}

void Engine::set_attention(parallel::SequenceAttention* attn) {
  attn_ = attn ? attn : &local_;
  attn_->set_kernel(attention_kernel());  // the engine's kernel option holds under every scheme
}

KVCache Engine::make_cache(int64_t capacity) const { return make_cache(capacity, opt_.kv); }

namespace {

void check_kv_type(const HParams& h, const KVCacheOptions& kv) {
  if (kv.type == DType::Q8_0 && h.kv_dim() % kQBlock != 0)
    bad_input("--kv-type q8_0 needs the KV row width (KV heads x head dim = {}) to be a "
              "multiple of {}", h.kv_dim(), kQBlock);
}

}  // namespace

KVCache Engine::make_cache(int64_t capacity, const KVCacheOptions& kv) const {
  const auto& h = model_.hparams();
  check_kv_type(h, kv);
  return KVCache(h.n_layer, capacity, h.kv_dim(), kv);
}

std::shared_ptr<PagedKVCache> Engine::make_pool(int64_t tokens) const {
  return make_pool(tokens, opt_.kv);
}

std::shared_ptr<PagedKVCache> Engine::make_pool(int64_t tokens, const KVCacheOptions& kv) const {
  const auto& h = model_.hparams();
  check_kv_type(h, kv);
  return make_kv_pool(h.n_layer, tokens, h.kv_dim(), kv);
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

namespace {
// Steps of at most this many rows (decode batches of a server, whose row count changes
// from step to step) keep their graphs side by side, up to kSmallBytes of arenas; past
// that the others are dropped. Rebuilding a graph every step cost a continuous-batching
// server about a third of its throughput (small Q8_0, 16 streams: 368 -> 547 tokens/s).
constexpr int64_t kSmallShape = 64;
constexpr size_t kSmallBytes = size_t{32} << 20;
}  // namespace

graph::Executor& Engine::executor(int64_t m, int64_t out_from) {
  const auto key = std::make_pair(m, out_from);
  auto it = graphs_.find(key);
  if (it != graphs_.end()) return *it->second;
  // Shapes seen: prefill chunks, the last chunk (with logits rows), decode steps of one
  // or many sequences. One shape of more than kSmallShape rows is kept beside the small
  // ones: a new large shape replaces the old one (its arena is freed before the new one
  // is allocated, so activation memory is that of the largest step, not the sum of every
  // shape seen); small shapes are kept up to kSmallBytes of arenas.
  if (m > kSmallShape) std::erase_if(graphs_, [](const auto& g) { return g.first.first > kSmallShape; });
  graph::Graph g = build_forward_graph(model_, m, out_from);
  last_passes_ = {};
  if (opt_.fusion && !opt_.reference_kernels) {
    graph::eliminate_dead(g, last_passes_);
    graph::fuse(g, last_passes_);
  }
  graph::ExecOptions eo;
  eo.plan_memory = opt_.memory_plan;
  eo.reference = opt_.reference_kernels;
  eo.threads = pool_.size();
  ++graphs_built_;
  auto ex = std::make_unique<graph::Executor>(std::move(g), eo);
  graph::Executor& made = *graphs_.emplace(key, std::move(ex)).first->second;
  size_t small = 0;
  for (const auto& [shape, e] : graphs_)
    if (shape.first <= kSmallShape) small += e->memory().arena_bytes;
  if (m <= kSmallShape && small > kSmallBytes)
    std::erase_if(graphs_, [&](const auto& g) { return g.first.first <= kSmallShape && g.first != key; });
  size_t held = 0, unplanned = 0;
  for (const auto& [shape, e] : graphs_) {
    held += e->memory().arena_bytes;
    unplanned += e->memory().unplanned_bytes;
  }
  activation_peak_ = std::max(activation_peak_, held);
  unplanned_peak_ = std::max(unplanned_peak_, unplanned);
  return made;
}

parallel::AttnStep Engine::attn_step(int layer, int64_t m, const float* q, const float* k,
                                     const float* v, const int32_t* pos, float* out) const {
  parallel::AttnStep step;
  step.layer = layer;
  step.m = m;
  step.q = q;
  step.k = k;
  step.v = v;
  step.pos = pos;
  step.out = out;
  step.window = int32_t(model_.hparams().layer_window(layer));
  return step;
}

void Engine::run_step(const int32_t* ids, const int32_t* pos, int64_t m, int64_t out_from,
                      float* logits, const graph::AttendFn& attend) {
  ++steps_;
  const int64_t from = logits ? out_from : m;
  graph::Executor& ex = executor(m, from);
  float* outputs[1] = {logits};
  ex.run(ids, pos, std::span<float* const>(outputs, from < m ? 1 : 0), attend, pool_, trace_,
         op_timer_);
  last_mem_ = ex.memory();
  if (!opt_.graph_reuse) graphs_.erase(std::make_pair(m, from));
}

void Engine::forward_chunk(KVCache& cache, const int32_t* ids, const int32_t* pos, int64_t m,
                           int64_t out_from, float* logits) {
  const int64_t slot = attn_->begin_step(cache, m, pos);
  run_step(ids, pos, m, out_from, logits,
           [&](int layer, const float* q, const float* k, const float* v, float* out) {
             attn_->attend(cache, slot, attn_step(layer, m, q, k, v, pos, out));
           });
}

void Engine::set_reference_kernels(bool on) {
  EngineOptions o = opt_;
  o.reference_kernels = on;
  set_options(o);
}

void Engine::set_options(const EngineOptions& o) {
  opt_ = o;
  attn_->set_kernel(attention_kernel());
  graphs_.clear();
}

}  // namespace tandem
