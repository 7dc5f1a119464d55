#pragma once
// 2D hybrid sequence parallelism: P = U x R ranks. Ulysses inside groups of U
// consecutive ranks (group g = ranks gU .. gU+U-1), pass-KV ring across the R groups
// (the ranks with the same place u in their groups form ring u, ordered by group).
// Tokens are placed contiguously over the P ranks, so group g holds a contiguous chunk.
//
// Per layer: the group's all-to-all (HeadExchange) gives member u its head subset
// split_heads(H, G, U)[u] for the group's whole chunk; ring u then runs pass-KV
// (PassKVRing) on those head-sharded blocks, every ring member holding the same heads for
// a different chunk; a second all-to-all returns the outputs to the member's tokens.
// U = 1 is the ring, R = 1 is Ulysses. Volume per layer and rank: the Ulysses exchange
// within the group (see head_exchange.hpp, with n = the group's chunk) plus the ring over
// R members of blocks of n * 2*ng*d floats (ng = KV heads of the subset).
//
// Prefill onto empty caches: each rank's cache ends holding its own tokens' K/V.
#include <memory>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/head_exchange.hpp"
#include "tandem/parallel/ring_attention.hpp"

namespace tandem::parallel {

class HybridAttention : public SequenceAttention {
 public:
  // Collective over `comm` (splits it); comm.size() must equal ulysses * ring.
  HybridAttention(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm,
                  int ulysses, int ring);
  std::string_view name() const override { return "hybrid"; }
  bool lockstep() const override { return true; }
  int64_t begin_step(KVCache& cache, int64_t m, const int32_t* pos) override;
  void attend(KVCache& cache, int64_t slot, const AttnStep& s) override;
  const RingStats& ring_stats() const { return ring_->stats(); }
  void set_kernel(AttnKernel k) override {
    SequenceAttention::set_kernel(k);
    ring_->set_kernel(k);
  }
  void set_step_chunk(int64_t chunk) override { ring_->set_chunk_rows(ring_chunk_rows(chunk)); }
  uint64_t head_pairs() const override { return ring_->stats().head_pairs; }

 private:
  std::unique_ptr<comm::Communicator> group_comm_, ring_comm_;
  std::unique_ptr<HeadExchange> exchange_;
  std::unique_ptr<PassKVRing> ring_;
};

}  // namespace tandem::parallel
