#include "tandem/parallel/sequence_attention.hpp"

#include <algorithm>

#include "tandem/kernels/attention_plain.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem::parallel {

int64_t SequenceAttention::begin_step(KVCache& cache, int64_t m, const int32_t* pos) {
  return cache.append(m, pos);
}

void SequenceAttention::store_kv(KVCache& cache, int64_t slot, const AttnStep& s, int64_t first,
                                 int64_t count) const {
  if (count < 0) count = s.m - first;
  const int64_t kv = shape_.kv_dim();
  cache.write(s.layer, slot, count, s.k + first * kv, s.v + first * kv);
}

kernels::AttentionArgs SequenceAttention::cache_args(const AttnStep& s, const KVCache& cache) const {
  auto a = kernel_args(s, nullptr, nullptr, nullptr, cache.size());
  a.pages = cache.pages(s.layer);
  return a;
}

kernels::AttentionArgs SequenceAttention::kernel_args(const AttnStep& s, const float* k,
                                                      const float* v, const int32_t* kv_pos,
                                                      int64_t n_kv) const {
  kernels::AttentionArgs a;
  a.q = s.q;
  a.q_pos = s.pos;
  a.n_q = s.m;
  a.k = k;
  a.v = v;
  a.kv_pos = kv_pos;
  a.n_kv = n_kv;
  a.kv_stride = shape_.kv_dim();
  a.H = shape_.H;
  a.G = shape_.G;
  a.d = shape_.d;
  a.scale = shape_.scale;
  return a;
}

void LocalAttention::attend(KVCache& cache, int64_t slot, const AttnStep& s) {
  store_kv(cache, slot, s);
  auto a = cache_args(s, cache);
  a.out = s.out;
  if (reference_) {
    kernels::ref::attention(a);
  } else if (flash_) {
    kernels::attention(a, pool_);
  } else {
    kernels::attention_materialized(a, pool_);
  }
}

}  // namespace tandem::parallel
