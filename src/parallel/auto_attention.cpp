#include "tandem/parallel/auto_attention.hpp"

#include "tandem/parallel/scheme.hpp"

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

namespace tandem::parallel {

const SchemeDesc& ring_scheme();    // ring_attention.cpp
const SchemeDesc& pass_q_scheme();  // pass_q_attention.cpp

const SchemeDesc& auto_scheme() {
  static const SchemeDesc d = [] {
    SchemeDesc x;
    x.name = x.syntax = "auto";
    x.help = "pass-KV or pass-Q per step, whichever moves fewer bytes (contiguous shards)";
    x.onto_cache = true;
    x.make = scheme_parts::make_strategy<AutoAttention>;
    x.workspace_bytes = [](const Scheme& s, AttnShape shape, int64_t m_local, int64_t n_total,
                           int ranks) {
      // Both strategies keep their buffers once used (a chunked prefill uses both).
      return ring_scheme().workspace_bytes(s, shape, m_local, n_total, ranks) +
             pass_q_scheme().workspace_bytes(s, shape, m_local, n_total, ranks);
    };
    // A prefill onto empty caches picks pass-KV for its first band (prefer_pass_q);
    // later bands of a chunked prefill pick by the same rule.
    x.cost = [](const Scheme& s, const CostShape& shape, int64_t n, int ranks) {
      return scheme_parts::ring_cost(s, shape, n, ranks, scheme_parts::RingMove::Auto);
    };
    return x;
  }();
  return d;
}

}  // namespace tandem::parallel
