#pragma once
// Merging partial attention results. A partial result over a subset of the keys is
// (out, lse): the softmax-weighted values over that subset and the log-sum-exp of its
// scaled scores. Two partials over disjoint subsets combine exactly:
//   lse = log(exp(lse_a) + exp(lse_b)),
//   out = out_a * exp(lse_a - lse) + out_b * exp(lse_b - lse)
// (an lse of -inf marks an empty subset and contributes nothing).
#include <cstdint>

namespace tandem::kernels {

// acc (out [n][H][d], lse [n][H]) <- merge(acc, part), in place, fp32.
void attention_merge(float* out, float* lse, const float* part_out, const float* part_lse,
                     int64_t n, int H, int d);

}  // namespace tandem::kernels
