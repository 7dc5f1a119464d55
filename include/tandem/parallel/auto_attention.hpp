#pragma once
// --sp auto: picks pass-KV (RingAttention) or pass-Q (PassQAttention) for each forward
// step from their communication volumes. Pass-KV moves every cached K/V row, 2*G*d
// floats per token, pass-Q moves the new tokens' queries, H*d floats each; so, with
// `n_new` new and `n_cached` cached tokens summed over the ranks, pass-Q is picked when
//   n_new / (n_new + n_cached) < 2G / H,
// and pass-KV otherwise, always for a prefill onto empty caches. (The rule weighs Q
// against K/V only; the partial outputs pass-Q sends back, (H*d + H) floats per new
// token, are left out.) Every rank takes the same decision: the counts are allreduced
// in begin_step.
#include "tandem/parallel/pass_q_attention.hpp"
#include "tandem/parallel/ring_attention.hpp"

namespace tandem::parallel {

// True when pass-Q should serve a step with these totals (over all ranks).
bool prefer_pass_q(int64_t n_new, int64_t n_cached, int H, int G);

class AutoAttention : public SequenceAttention {
 public:
  AutoAttention(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm)
      : SequenceAttention(shape, pool),
        comm_(comm),
        pass_kv_(shape, pool, comm),
        pass_q_(shape, pool, comm) {}
  std::string_view name() const override { return "auto"; }
  bool lockstep() const override { return true; }
  int64_t begin_step(KVCache& cache, int64_t m, const int32_t* pos) override;
  void attend(KVCache& cache, int64_t slot, const AttnStep& s) override {
    chosen_->attend(cache, slot, s);
  }
  void set_kernel(AttnKernel k) override {
    SequenceAttention::set_kernel(k);
    pass_kv_.set_kernel(k);
    pass_q_.set_kernel(k);
  }
  void set_step_chunk(int64_t chunk) override { pass_kv_.set_step_chunk(chunk); }
  uint64_t head_pairs() const override { return pass_kv_.head_pairs() + pass_q_.head_pairs(); }
  // The strategy of the last step (pass-KV before the first).
  const SequenceAttention& chosen() const { return *chosen_; }

 private:
  comm::Communicator& comm_;
  RingAttention pass_kv_;
  PassQAttention pass_q_;
  SequenceAttention* chosen_ = &pass_kv_;
};

}  // namespace tandem::parallel
