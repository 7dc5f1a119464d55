#pragma once
// The forward pass of a Llama-family model on one process: tokens in, logits out,
// K/V appended to a per-layer cache.
#include <cstdint>
#include <span>
#include <vector>

#include "tandem/core/trace.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/memory/kv_cache.hpp"
#include "tandem/model/model.hpp"
#include "tandem/parallel/sequence_attention.hpp"

namespace tandem {

// The attention shape of a model (heads, KV heads, head dim, 1/sqrt(d) scale).
parallel::AttnShape shape_of(const HParams& h);

class Engine {
 public:
  // Tokens per forward chunk: prefill of N tokens runs in ceil(N / chunk) steps so
  // activation memory stays bounded.
  static constexpr int64_t kDefaultChunk = 512;

  Engine(const Model& model, kernels::ThreadPool& pool, int64_t chunk = kDefaultChunk);

  // Plain scalar reference kernels instead of the optimized ones (the naive pipeline
  // of comparisons; single rank).
  void set_reference_kernels(bool on);
  // Records compute spans per layer while set (not owned).
  void set_trace(Trace* t) { trace_ = t; }

  // The attention shape of the model (for building SequenceAttention strategies).
  parallel::AttnShape attn_shape() const;
  // Attention strategy of the following forward calls (not owned; nullptr restores the
  // single-rank strategy). Sequence-parallel runs set ring, sharded decode, ...
  void set_attention(parallel::SequenceAttention* attn);

  // A cache sized for `capacity` tokens of this model.
  KVCache make_cache(int64_t capacity) const;

  // Runs ids[i] at positions pos[i] (any positions; attention is causal by position)
  // through every layer; the attention strategy stores their K/V in `cache`. Writes the
  // logits of the last n_out tokens to logits ([n_out][V]); n_out may be 0. ids must
  // be < V. Under a lockstep strategy the tokens run in one step (even zero tokens).
  void forward(KVCache& cache, std::span<const int32_t> ids, std::span<const int32_t> pos,
               int64_t n_out, float* logits);

  const Model& model() const { return model_; }
  kernels::ThreadPool& pool() const { return pool_; }
  // Bytes of activation buffers held (they grow to the largest step run so far).
  size_t activation_bytes() const;

 private:
  void forward_chunk(KVCache& cache, const int32_t* ids, const int32_t* pos, int64_t m,
                     int64_t out_from, float* logits);
  // The ops of one step: optimized on the pool, or the scalar references.
  void matmul(const MatrixView& w, const float* x, int64_t m, float* y, const float* bias = nullptr);
  void rmsnorm(const float* x, const float* w, float* y, int64_t m);
  void rope(float* x, int64_t m, int heads, const int32_t* pos);

  const Model& model_;
  kernels::ThreadPool& pool_;
  int64_t chunk_;
  parallel::LocalAttention local_;
  parallel::SequenceAttention* attn_;
  bool reference_ = false;
  Trace* trace_ = nullptr;
  // Activations for one chunk, sized on first use.
  std::vector<float> x_, h_, q_, k_, v_, attn_out_, gate_, up_;
};

}  // namespace tandem
