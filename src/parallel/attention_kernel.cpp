#include "tandem/parallel/attention_kernel.hpp"

#include <algorithm>

#include "tandem/kernels/attention_plain.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem::parallel {

std::string_view attn_kernel_name(AttnKernel k) {
  switch (k) {
    case AttnKernel::Flash: return "flash";
    case AttnKernel::Materialized: return "materialized";
    case AttnKernel::Reference: return "reference";
  }
  return "?";
}

void run_attention(const kernels::AttentionArgs& a, AttnKernel kernel, kernels::ThreadPool& pool) {
  switch (kernel) {
    case AttnKernel::Flash: kernels::attention(a, pool); return;
    case AttnKernel::Materialized: kernels::attention_materialized(a, pool); return;
    case AttnKernel::Reference: kernels::ref::attention(a); return;
  }
}

KvRows cache_rows(const KVCache& cache, int64_t layer) {
  KvRows r;
  r.n = cache.size();
  if (cache.contiguous()) {
    r.k = cache.k(layer, 0);
    r.v = cache.v(layer, 0);
    r.pos = cache.positions();
  } else {
    r.pages = cache.pages(layer);
  }
  return r;
}

uint64_t visible_pairs(const int32_t* q_pos, int64_t n_q, const int32_t* kv_pos, int64_t n_kv) {
  if (n_q <= 0 || n_kv <= 0) return 0;
  uint64_t n = 0;
  if (std::is_sorted(kv_pos, kv_pos + n_kv)) {
    for (int64_t i = 0; i < n_q; ++i)
      n += uint64_t(std::upper_bound(kv_pos, kv_pos + n_kv, q_pos[i]) - kv_pos);
    return n;
  }
  for (int64_t i = 0; i < n_q; ++i)
    for (int64_t j = 0; j < n_kv; ++j) n += kv_pos[j] <= q_pos[i];
  return n;
}

}  // namespace tandem::parallel
