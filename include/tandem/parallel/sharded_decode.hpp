#pragma once
// Decoding against a KV cache sharded across ranks. Every rank runs the same new
// tokens (replicated); each rank attends over its own shard, and the partial results
// (out, log-sum-exp) of all ranks are gathered and merged in rank order, so every rank
// ends with bit-identical outputs. Token at position p is stored on rank p mod P
// (round-robin keeps the shards balanced).
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/sequence_attention.hpp"

namespace tandem::parallel {

class ShardedDecode : public SequenceAttention {
 public:
  ShardedDecode(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm);
  std::string_view name() const override { return "sharded-decode"; }
  bool lockstep() const override { return true; }
  int64_t begin_step(KVCache& cache, int64_t m, const int32_t* pos) override;
  void attend(KVCache& cache, int64_t slot, const AttnStep& s) override;

  // Rank that stores the token at global position p.
  int owner(int32_t p) const { return int(p % comm_.size()); }

 private:
  comm::Communicator& comm_;
  std::vector<int64_t> mine_;       // indices (in the step) of the tokens stored here
  std::vector<float> gathered_;     // all ranks' partials: P x ([m][H*d] out, [m][H] lse)
  std::vector<float> lse_;
  std::vector<size_t> bytes_, offsets_;
};

}  // namespace tandem::parallel
