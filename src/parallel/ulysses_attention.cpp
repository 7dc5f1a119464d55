#include "tandem/parallel/ulysses_attention.hpp"

#include "tandem/parallel/scheme.hpp"
#include "tandem/core/error.hpp"

namespace tandem::parallel {

int64_t UlyssesAttention::begin_step(KVCache& cache, int64_t m, const int32_t* pos) {
  if (cache.size() != 0)
    bad_input("ulysses attention prefills empty KV caches; this rank's cache holds {} tokens",
              cache.size());
  exchange_.begin_step(m, pos);
  return SequenceAttention::begin_step(cache, m, pos);
}

void UlyssesAttention::attend(KVCache& cache, int64_t slot, const AttnStep& s) {
  store_kv(cache, slot, s);
  const AttnStep t = as_stored(cache, s);  // attend to K/V as every rank's cache holds them
  exchange_.to_heads(t.q, t.k, t.v);
  const int64_t n = exchange_.tokens();
  const int32_t* pos = exchange_.positions();
  count_pairs(pos, n, pos, n, exchange_.view().q_heads);
  attend_heads(with_window(exchange_.view(), s.window), exchange_.q(), pos, n, exchange_.k(),
               exchange_.v(), pos, n, exchange_.out(), nullptr, pool_, kernel_);
  exchange_.to_tokens(s.out);
}

}  // namespace tandem::parallel

namespace tandem::parallel {

const SchemeDesc& ulysses_scheme() {
  static const SchemeDesc d = [] {
    SchemeDesc x;
    x.name = x.syntax = "ulysses";
    x.help = "all-to-all to head-sharded attention (DeepSpeed-Ulysses), contiguous shards";
    x.make = scheme_parts::make_strategy<UlyssesAttention>;
    x.workspace_bytes = [](const Scheme&, AttnShape shape, int64_t m_local, int64_t n_total,
                           int ranks) {
      return scheme_parts::bytes_of(scheme_parts::exchange_floats(shape, m_local, n_total, ranks) +
                                    scheme_parts::partial_floats(shape, m_local));
    };
    x.cost = [](const Scheme& s, const CostShape& shape, int64_t n, int ranks) {
      const HeadExchangeCost ex = head_exchange_cost(shape, n, ranks, s.placement, ranks);
      CostPhase attend;
      attend.bytes.assign(size_t(ranks), 0.0);
      const double all = range_pairs(TokenRange{0, n}, TokenRange{0, n});
      for (int r = 0; r < ranks; ++r) attend.head_pairs.push_back(all * ex.q_heads[size_t(r)]);
      attend.query_tokens.assign(size_t(ranks), double(n));
      attend.query_heads = ex.q_heads;
      return CostPhases{ex.to_heads, attend, ex.to_tokens};
    };
    return x;
  }();
  return d;
}

}  // namespace tandem::parallel
