#pragma once
// Ring attention, pass-KV: every rank keeps its queries while the K/V blocks of all
// ranks travel around the ring (rank r sends to r+1, receives from r-1). The transfer
// of the next block overlaps attention on the block in hand (double buffering);
// partial results merge by log-sum-exp in fp32; blocks entirely in the causal future
// are skipped; with grouped KV heads only the G KV heads travel.
// Prefill onto empty caches: each rank's cache ends holding its own tokens' K/V.
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/sequence_attention.hpp"

namespace tandem::parallel {

// Time split of the ring, accumulated over calls.
struct RingStats {
  double compute_seconds = 0;  // attention on blocks, merges
  double wait_seconds = 0;     // blocked on transfers (communication not hidden)
  uint64_t blocks_skipped = 0;
};

class RingAttention : public SequenceAttention {
 public:
  RingAttention(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm);
  std::string_view name() const override { return "ring"; }
  bool lockstep() const override { return true; }
  int64_t begin_step(KVCache& cache, int64_t m, const int32_t* pos) override;
  void attend(KVCache& cache, int64_t slot, const AttnStep& s) override;
  const RingStats& stats() const { return stats_; }

 private:
  void attend_block(const AttnStep& s, const float* k, const float* v, const int32_t* kv_pos,
                    int64_t n_kv, bool first);

  kernels::ThreadPool& pool_;
  comm::Communicator& comm_;
  std::vector<int64_t> sizes_;   // tokens of every rank in this step
  int64_t max_size_ = 0;
  std::vector<float> buf_[2];    // packed blocks: [n][G*d] K, [n][G*d] V, [n] positions
  std::vector<float> part_out_, part_lse_, lse_;
  std::vector<int32_t> pos_;
  RingStats stats_;
};

}  // namespace tandem::parallel
