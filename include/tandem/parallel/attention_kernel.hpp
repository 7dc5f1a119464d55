#pragma once
// What every sequence-parallel strategy shares below the strategy: which attention kernel
// computes a call (the engine's options choose it, for one rank and for P ranks alike),
// the K/V rows a call reads (contiguous rows or a KV cache's pages), and the count of the
// work a call did (visible query-key pairs, what the planner predicts per rank).
#include <cstdint>
#include <string_view>

#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/memory/kv_cache.hpp"

namespace tandem::parallel {

enum class AttnKernel {
  Flash,         // tiled online softmax (kernels::attention)
  Materialized,  // score matrix stored, then softmax (kernels::attention_materialized)
  Reference,     // plain scalar reference (kernels::ref::attention)
};
std::string_view attn_kernel_name(AttnKernel k);

// Runs `a` (any key source: rows or pages; lse optional) with the chosen kernel.
void run_attention(const kernels::AttentionArgs& a, AttnKernel kernel, kernels::ThreadPool& pool);

// K/V rows one attention call reads: n rows of `stride` floats at k and v with positions
// pos; or, when pages.tokens > 0, the first n keys of a KV cache read through its pages
// (rows of every KV head, any storage type).
struct KvRows {
  const float* k = nullptr;
  const float* v = nullptr;
  const int32_t* pos = nullptr;
  int64_t n = 0;
  KvPages pages;
};

// One layer's keys of `cache` as attention reads them: the contiguous rows where the cache
// is one f32 run (the same pointers the kernels always read), else its pages.
KvRows cache_rows(const KVCache& cache, int64_t layer);

// (query, key) pairs visible under the causal mask (kv_pos[j] <= q_pos[i]). O(n_q log n_kv)
// when the keys are in ascending order (every strategy's are), else O(n_q * n_kv).
uint64_t visible_pairs(const int32_t* q_pos, int64_t n_q, const int32_t* kv_pos, int64_t n_kv);

}  // namespace tandem::parallel
