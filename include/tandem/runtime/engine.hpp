#pragma once
// The forward pass of a Llama-family model on one process: tokens in, logits out,
// K/V appended to a per-layer cache.
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "tandem/core/trace.hpp"
#include "tandem/graph/executor.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/memory/kv_cache.hpp"
#include "tandem/model/model.hpp"
#include "tandem/parallel/sequence_attention.hpp"

namespace tandem {

// The attention shape of a model (heads, KV heads, head dim, 1/sqrt(d) scale).
parallel::AttnShape shape_of(const HParams& h);

// The sequential optimizations of one pipeline, each switchable (tandem bench --ablation).
struct EngineOptions {
  bool reference_kernels = false;  // plain scalar kernels (forces the unfused graph)
  bool flash_attention = true;     // tiled online-softmax attention; off: scores materialized
  bool memory_plan = true;         // activation buffers planned into one arena; off: one each
  bool fusion = true;              // graph passes: fusions and dead-node elimination
  bool graph_reuse = true;         // graph built once per shape; off: rebuilt every step
  // KV cache of make_cache(capacity): contiguous f32 by default; the CLI pages it on one
  // rank (--kv-page, --kv-type); every strategy reads any layout through its page table.
  KVCacheOptions kv;
};

// One sequence's new tokens in a batched forward step (Engine::forward_batch).
struct BatchItem {
  KVCache* cache = nullptr;        // the sequence's cache (one item per cache in a batch)
  std::span<const int32_t> ids;    // its new tokens (< V) ...
  std::span<const int32_t> pos;    // ... at these positions
  float* logits = nullptr;         // non-null: receives the logits [V] of its last token
};

class Engine {
 public:
  // Tokens per forward chunk: prefill of N tokens runs in ceil(N / chunk) steps so
  // activation memory stays bounded.
  static constexpr int64_t kDefaultChunk = 512;

  Engine(const Model& model, kernels::ThreadPool& pool, int64_t chunk = kDefaultChunk);

  // Plain scalar reference kernels instead of the optimized ones (the naive pipeline
  // of comparisons; single rank).
  void set_reference_kernels(bool on);
  void set_options(const EngineOptions& o);
  const EngineOptions& options() const { return opt_; }
  // Records compute spans per layer while set (not owned).
  void set_trace(Trace* t) { trace_ = t; }
  // Told each node's time of the following steps while set (not owned).
  void set_op_timer(graph::OpTimer* t) { op_timer_ = t; }

  // The attention shape of the model (for building SequenceAttention strategies).
  parallel::AttnShape attn_shape() const;
  // Attention strategy of the following forward calls (not owned; nullptr restores the
  // single-rank strategy). Sequence-parallel runs set ring, sharded decode, ... The
  // strategy computes attention with the kernel the options choose.
  void set_attention(parallel::SequenceAttention* attn);
  // The attention kernel of the options: reference, flash, or materialized scores.
  parallel::AttnKernel attention_kernel() const;

  // A cache sized for `capacity` tokens of this model, laid out as options().kv says or
  // as kv says (sequence-parallel strategies other than sharded decode need the
  // contiguous default KVCacheOptions{}).
  KVCache make_cache(int64_t capacity) const;
  KVCache make_cache(int64_t capacity, const KVCacheOptions& kv) const;
  // A page pool of `tokens` tokens that many sequences share (a server's --kv-pool),
  // laid out as options().kv says (its page_tokens must be > 0); KVCache(pool, capacity)
  // makes each sequence in it.
  std::shared_ptr<PagedKVCache> make_pool(int64_t tokens) const;
  std::shared_ptr<PagedKVCache> make_pool(int64_t tokens, const KVCacheOptions& kv) const;

  // Runs ids[i] at positions pos[i] (any positions; attention is causal by position)
  // through every layer; the attention strategy stores their K/V in `cache`. Writes the
  // logits of the last n_out tokens to logits ([n_out][V]); n_out may be 0. ids must
  // be < V. Under a lockstep strategy the tokens run in one step (even zero tokens).
  void forward(KVCache& cache, std::span<const int32_t> ids, std::span<const int32_t> pos,
               int64_t n_out, float* logits);

  // Continuous batching: one forward step over the new tokens of several sequences
  // (each item's rows against its own cache), so each weight matrix is read once for
  // all of them. Items may mix decode tokens and prompt chunks; logits are computed for
  // the last token of each item that asks for them, only. Over the engine's chunk the
  // rows run in several steps (an item may be split across two; its rows stay in
  // order). Single rank only: throws Error(BadInput) while a non-local attention
  // strategy is set. A cache that cannot take its item's tokens throws Error(Resource)
  // and the step leaves every cache as it was (steps already run stay, as in forward).
  void forward_batch(std::span<const BatchItem> items);

  const Model& model() const { return model_; }
  kernels::ThreadPool& pool() const { return pool_; }
  // Bytes of activation buffers held at once, at most (the arenas of the graphs kept for
  // reuse; the largest sum since the engine was made).
  size_t activation_bytes() const { return activation_peak_; }
  // What the same graphs would hold with one buffer per value (no memory plan), at most.
  size_t activation_unplanned_bytes() const { return unplanned_peak_; }
  // The graph of the last step: its memory (planned vs unplanned) and what the passes did.
  const graph::MemoryStats& last_memory() const { return last_mem_; }
  const graph::PassStats& last_passes() const { return last_passes_; }
  // Graphs built so far (one per shape with reuse; one per step without).
  int64_t graphs_built() const { return graphs_built_; }
  // Forward steps run so far (a chunked prefill runs one per chunk).
  int64_t steps() const { return steps_; }

 private:
  struct BatchPiece;
  void forward_chunk(KVCache& cache, const int32_t* ids, const int32_t* pos, int64_t m,
                     int64_t out_from, float* logits);
  void forward_batch_step(std::span<const BatchItem> items, std::vector<BatchPiece>& pieces);
  // One graph step over m rows, logits of the rows [out_from, m) into logits (none when
  // logits is null); attend() computes each layer's attention.
  void run_step(const int32_t* ids, const int32_t* pos, int64_t m, int64_t out_from,
                float* logits, const graph::AttendFn& attend);
  // The attention call of `layer` over m rows.
  parallel::AttnStep attn_step(int layer, int64_t m, const float* q, const float* k,
                               const float* v, const int32_t* pos, float* out) const;
  graph::Executor& executor(int64_t m, int64_t out_from);

  const Model& model_;
  kernels::ThreadPool& pool_;
  int64_t chunk_;
  parallel::LocalAttention local_;
  // The single-rank strategy on the calling thread alone: forward_batch runs the
  // attention of one-row items on every pool thread at once, a whole item each.
  std::unique_ptr<kernels::ThreadPool> solo_pool_;
  parallel::LocalAttention solo_;
  parallel::SequenceAttention* attn_;
  EngineOptions opt_;
  Trace* trace_ = nullptr;
  graph::OpTimer* op_timer_ = nullptr;
  // Compiled graphs by shape (m, out_from).
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<graph::Executor>> graphs_;
  graph::MemoryStats last_mem_;
  graph::PassStats last_passes_;
  int64_t graphs_built_ = 0;
  int64_t steps_ = 0;
  size_t activation_peak_ = 0, unplanned_peak_ = 0;
  // forward_batch scratch: rows in step order, gathered rows of split items, logits.
  std::vector<int32_t> batch_ids_, batch_pos_;
  std::vector<float> gather_, batch_logits_;
  std::vector<const BatchPiece*> one_row_;  // the step's one-row pieces
};

}  // namespace tandem
