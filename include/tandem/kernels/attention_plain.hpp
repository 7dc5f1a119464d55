#pragma once
// Attention without flash attention, for the --no-flash-attn ablation: the way
// attention is computed when the scores are materialized. Per query head the whole
// score matrix S = scale * Q K^T ([n_q][n_kv] floats, masked pairs included: under a
// causal mask they are computed and then set to -inf, no block is skipped) is stored,
// then each row is softmaxed in place and O = P V. The loops are vectorized (per-ISA,
// the same dispatch as the other kernels) and the thread pool splits the work by head
// (and by query rows when that balances the threads better).
//
// Memory: each thread holds the scores of the head it is working on, n_q * n_kv floats
// (fewer rows when rows are split), plus K^T of one KV head; kept per thread between
// calls and grown as needed. That O(N^2) buffer is what the flash kernel avoids.
#include <cstddef>

#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/thread_pool.hpp"

namespace tandem::kernels {

// Same contract as attention() (ops.hpp): GQA mapping h -> h / (H/G), kv_stride, the
// mask by positions (causal, window), soft-capping, out [n_q][H][d], optional lse [n_q][H]
// (-inf and a zero out row where no key is visible).
void attention_materialized(const AttentionArgs& a, ThreadPool& pool);

// The most bytes of score, K^T and normalizer buffers one call of attention_materialized
// has needed (over all its threads) since the last reset: what materializing costs.
size_t attention_scratch_peak();
void reset_attention_scratch_peak();

}  // namespace tandem::kernels
