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

#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/memory/kv_cache.hpp"

namespace tandem::parallel {

struct AttnShape {
  int H = 0, G = 0, d = 0;  // query heads, KV heads, head dim
  float scale = 0.0f;
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
};

class SequenceAttention {
 public:
  explicit SequenceAttention(AttnShape shape) : shape_(shape) {}
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

  AttnShape shape_;
};

// Single rank: stores every new token and attends over the whole cache.
class LocalAttention : public SequenceAttention {
 public:
  LocalAttention(AttnShape shape, kernels::ThreadPool& pool) : SequenceAttention(shape), pool_(pool) {}
  std::string_view name() const override { return "local"; }
  void attend(KVCache& cache, int64_t slot, const AttnStep& s) override;
  // Use the plain scalar reference attention (naive pipeline).
  void set_reference(bool on) { reference_ = on; }
  // Flash attention (default) or, when off, the materialized-score kernel
  // (kernels::attention_materialized, the --no-flash-attn ablation). Reference mode,
  // when set, wins over both.
  void set_flash(bool on) { flash_ = on; }

 private:
  kernels::ThreadPool& pool_;
  bool reference_ = false;
  bool flash_ = true;
};

}  // namespace tandem::parallel
