#pragma once
// How the attention of one forward step is computed when the sequence may be spread
// over ranks. The engine runs every token-local op (norms, matmuls, FFN) on this rank's
// tokens and hands each layer's attention to a SequenceAttention strategy:
//   LocalAttention   one rank, the whole cache (also the reference for the others);
//   RingAttention    pass-KV ring: K/V blocks circulate (ring_attention.hpp);
//   UlyssesAttention all-to-all to head-sharded layout (ulysses_attention.hpp);
//   HybridAttention  Ulysses inside groups, ring across them (hybrid_attention.hpp);
//   PassQAttention   queries circulate, K/V stay (pass_q_attention.hpp);
//   AutoAttention    pass-KV or pass-Q per call from the volumes (auto_attention.hpp);
//   ShardedDecode    replicated new tokens against a KV cache sharded across ranks.
#include <cstdint>
#include <string_view>

#include <vector>

#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/memory/kv_cache.hpp"
#include "tandem/parallel/attention_kernel.hpp"

namespace tandem::parallel {

struct AttnShape {
  int H = 0, G = 0, d = 0;  // query heads, KV heads, head dim
  float scale = 0.0f;
  float softcap = 0.0f;     // > 0: scores soft-capped, s -> softcap * tanh(s / softcap)
  int64_t q_dim() const { return int64_t(H) * d; }
  int64_t kv_dim() const { return int64_t(G) * d; }
};

// One layer of one forward step on this rank: m new tokens.
struct AttnStep {
  int64_t layer = 0;
  int64_t m = 0;
  const float* q = nullptr;      // [m][H*d], rotary applied
  const float* k = nullptr;      // [m][G*d], rotary applied
  const float* v = nullptr;      // [m][G*d]
  const int32_t* pos = nullptr;  // [m] global positions
  float* out = nullptr;          // [m][H*d]
  int32_t window = 0;            // > 0: this layer's sliding window (a query at p sees
                                 // keys at (p - window, p]); 0: every key at <= p
};

// Every strategy reads the KV cache through its page table (any page size, f32 or Q8_0
// rows) and computes attention with the kernel set_kernel() chose, so every cache layout
// and kernel option works under every scheme as on one rank.
class SequenceAttention {
 public:
  SequenceAttention(AttnShape shape, kernels::ThreadPool& pool) : shape_(shape), pool_(pool) {}
  virtual ~SequenceAttention() = default;

  virtual std::string_view name() const = 0;
  // True when every rank must run the same number of forward steps (collectives
  // inside): the engine then runs a rank's tokens in one step, even zero tokens.
  virtual bool lockstep() const { return false; }
  // Once per forward step, before the layers: reserves cache slots for the tokens this
  // rank stores and returns the first, or -1 when it stores none of them.
  virtual int64_t begin_step(KVCache& cache, int64_t m, const int32_t* pos);
  // Attention of the step's queries over every visible key of the sequence; stores the
  // new K/V this rank keeps (rows from `slot`).
  virtual void attend(KVCache& cache, int64_t slot, const AttnStep& s) = 0;

  const AttnShape& shape() const { return shape_; }
  // The scheme's chunk (Scheme::chunk: tokens per rank per step, 0: whole shard): a
  // strategy that moves K/V in chunks sizes its messages by it (ring_chunk_rows).
  virtual void set_step_chunk(int64_t) {}
  // The kernel of every attention call (default flash).
  virtual void set_kernel(AttnKernel k) { kernel_ = k; }
  AttnKernel kernel() const { return kernel_; }
  // Work done on this rank so far: (query, key, query head) triples visible under the
  // causal mask that its attention calls computed, summed over layers and steps.
  virtual uint64_t head_pairs() const { return head_pairs_; }

 protected:
  // Kernel arguments for the step's queries against n_kv keys (rows of kv_dim floats);
  // out/lse are left for the caller.
  kernels::AttentionArgs kernel_args(const AttnStep& s, const float* k, const float* v,
                                     const int32_t* kv_pos, int64_t n_kv) const;
  // Kernel arguments for the step's queries against every key of the cache (read
  // through its pages, any storage); out/lse are left for the caller.
  kernels::AttentionArgs cache_args(const AttnStep& s, const KVCache& cache) const;
  // Copies the step's K/V rows [first, first+count) into cache rows from `slot`.
  void store_kv(KVCache& cache, int64_t slot, const AttnStep& s, int64_t first = 0,
                int64_t count = -1) const;
  // The step's K/V as `cache` stores them: s itself for f32 rows; for quantized rows a
  // copy of s whose k and v went through the cache's row type and back (in buffers this
  // object keeps), so that attention over them equals attention over the cache.
  AttnStep as_stored(const KVCache& cache, const AttnStep& s);
  // Adds the visible pairs of queries at q_pos against keys at kv_pos, times `heads`.
  void count_pairs(const int32_t* q_pos, int64_t n_q, const int32_t* kv_pos, int64_t n_kv,
                   int64_t heads);
  // Every position the cache holds, read through its pages into cache_pos_ (once per
  // step, in begin_step, by the strategies that attend over their whole cache).
  void read_cache_positions(const KVCache& cache);

  AttnShape shape_;
  kernels::ThreadPool& pool_;
  AttnKernel kernel_ = AttnKernel::Flash;
  uint64_t head_pairs_ = 0;
  std::vector<int32_t> cache_pos_;  // read_cache_positions()

 private:
  std::vector<float> stored_k_, stored_v_;
};

// Single rank: stores every new token and attends over the whole cache.
class LocalAttention : public SequenceAttention {
 public:
  LocalAttention(AttnShape shape, kernels::ThreadPool& pool) : SequenceAttention(shape, pool) {}
  std::string_view name() const override { return "local"; }
  void attend(KVCache& cache, int64_t slot, const AttnStep& s) override;
};

}  // namespace tandem::parallel
