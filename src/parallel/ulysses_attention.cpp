#include "tandem/parallel/ulysses_attention.hpp"

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
  exchange_.to_heads(s.q, s.k, s.v);
  const int64_t n = exchange_.tokens();
  const int32_t* pos = exchange_.positions();
  attend_heads(exchange_.view(), exchange_.q(), pos, n, exchange_.k(), exchange_.v(), pos, n,
               exchange_.out(), nullptr, pool_);
  exchange_.to_tokens(s.out);
}

}  // namespace tandem::parallel
