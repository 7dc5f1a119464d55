#pragma once
// Ulysses (all-to-all) sequence parallelism: ranks hold contiguous shards of the
// sequence; per layer, one all-to-all turns the inputs into the head-sharded layout
// (rank r holds query heads split_heads(H, G, P)[r] and the KV heads they read, for
// ALL tokens), each rank runs full-sequence causal attention on its heads, and a second
// all-to-all returns the outputs to the sequence-sharded layout. Uneven splits are
// allowed: H need not divide by P (some ranks get one more head, none when P > H), and
// KV heads are replicated when several ranks read the same one (P > G).
//
// Volume per layer and rank (m = N/P tokens here, nh ~ H/P, ng >= G/P): sends about
// (P-1)/P * m * (H + 2G')*d floats out and (P-1)/P * N * nh * d back, where G' counts the
// replicated KV heads; unlike the ring, the volume per rank shrinks as P grows.
//
// Prefill onto empty caches: each rank's cache ends holding its own tokens' K/V
// (sequence-sharded), so sharded decode can follow.
#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/head_exchange.hpp"
#include "tandem/parallel/sequence_attention.hpp"

namespace tandem::parallel {

class UlyssesAttention : public SequenceAttention {
 public:
  UlyssesAttention(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm)
      : SequenceAttention(shape, pool), exchange_(shape, comm) {}
  std::string_view name() const override { return "ulysses"; }
  bool lockstep() const override { return true; }
  int64_t begin_step(KVCache& cache, int64_t m, const int32_t* pos) override;
  void attend(KVCache& cache, int64_t slot, const AttnStep& s) override;

 private:
  HeadExchange exchange_;
};

}  // namespace tandem::parallel
