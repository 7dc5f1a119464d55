#pragma once
// Ring attention, pass-Q: the K/V stay where they are and the query blocks travel
// around the ring (RingCirculator, double buffered). Every rank computes the partial
// (out, lse) of each visiting query block against ALL rows of its own cache (the tokens
// it cached before the step and its new ones, stored first) with the causal mask by
// position, and sends the partial straight back to the block's owner, which merges the
// P partials by log-sum-exp (fp32, in ring order). So pass-Q prefills onto empty caches
// or onto caches that already hold a sharded sequence (and can decode); shards may be
// uneven or empty.
//
// Communication per layer and rank, with n_r new tokens on rank r and N_new = sum n_r:
//   queries: forwards the other ranks' blocks, (N_new - n_r) * (H*d + 1) floats;
//   partials: sends (N_new - n_r) * (H*d + H) floats back to their owners.
// Neither grows with the cached tokens, while pass-KV moves every cache row
// (2*G*d + 1 floats each): pass-Q wins when few new tokens meet a long cache
// (see AutoAttention in scheme.hpp for the rule).
// Memory: the partials of all visiting blocks are kept until sent, and a rank receives
// P-1 partials of its own block: about 2 * N_new * (H*d + H) floats, so pass-Q suits
// modest numbers of new tokens.
#include <memory>
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/ring_attention.hpp"

namespace tandem::parallel {

class PassQAttention : public SequenceAttention {
 public:
  PassQAttention(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm);
  std::string_view name() const override { return "pass-q"; }
  bool lockstep() const override { return true; }
  int64_t begin_step(KVCache& cache, int64_t m, const int32_t* pos) override;
  void attend(KVCache& cache, int64_t slot, const AttnStep& s) override;
  const RingStats& stats() const { return circ_.stats(); }
  uint64_t head_pairs() const override { return circ_.stats().head_pairs; }

 private:
  RingCirculator circ_;
  HeadView view_;
  int32_t cache_min_pos_ = 0;     // smallest cached position (causal skip)
  std::vector<size_t> send_off_;  // floats: where each owner's partial goes in send_
  std::vector<float> send_, recv_, lse_;
  std::vector<int32_t> pos_;      // the visiting block's positions
  std::vector<std::unique_ptr<comm::Request>> reqs_;
};

}  // namespace tandem::parallel
