#include "tandem/parallel/auto_attention.hpp"

namespace tandem::parallel {

bool prefer_pass_q(int64_t n_new, int64_t n_cached, int H, int G) {
  if (n_cached == 0) return false;  // prefill onto empty caches: pass-KV
  // n_new / (n_new + n_cached) < 2G / H, in integers.
  return n_new * H < 2 * int64_t(G) * (n_new + n_cached);
}

int64_t AutoAttention::begin_step(KVCache& cache, int64_t m, const int32_t* pos) {
  int64_t counts[2] = {m, cache.size()};
  comm_.allreduce(counts, 2, comm::ReduceOp::Sum);
  chosen_ = prefer_pass_q(counts[0], counts[1], shape_.H, shape_.G)
                ? static_cast<SequenceAttention*>(&pass_q_)
                : &pass_kv_;
  return chosen_->begin_step(cache, m, pos);
}

}  // namespace tandem::parallel
