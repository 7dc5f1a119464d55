#pragma once
// Attention heads split over ranks (Ulysses and the hybrid's Ulysses groups), and
// attention on a rank's subset of heads.
//
// split_heads(H, G, parts): part r gets the r-th of `parts` near-equal contiguous ranges
// of the H query heads (the first H mod parts ranges get one more head; a part gets no
// head when parts > H) and every KV head those query heads read (query head h reads KV
// head h / (H/G)). KV heads are replicated when several parts read the same one (for
// example parts > G), and a part whose range straddles a KV-head boundary gets all
// the KV heads it touches.
//
// HeadView describes the layout of queries and K/V in a head subset:
//   queries / outputs  segment-major: segment s holds [n][nq_s][d] at offset n*q0_s*d
//                      (lse: [n][nq_s] at offset n*q0_s);
//   K / V rows         [n][kv_heads][d] (row stride kv_heads*d).
// A segment is a run of query heads read through a uniform grouping (nkv KV heads, each
// read by nq/nkv consecutive query heads), so one attention kernel call serves it. With
// one segment (all heads, or a subset aligned to the KV groups) the query layout is the
// plain token-major [n][heads][d].
#include <cstdint>
#include <vector>

#include "tandem/kernels/thread_pool.hpp"
#include "tandem/parallel/attention_kernel.hpp"

namespace tandem::parallel {

struct HeadGroup {
  int h0 = 0, nh = 0;  // query heads [h0, h0+nh)
  int g0 = 0, ng = 0;  // KV heads [g0, g0+ng) they read
};

// One group per part (see above). Requires H >= 1, G >= 1, G | H, parts >= 1.
std::vector<HeadGroup> split_heads(int H, int G, int parts);

struct HeadSegment {
  int q0 = 0, nq = 0;    // query heads [q0, q0+nq) of the subset
  int kv0 = 0, nkv = 0;  // KV heads [kv0, kv0+nkv) of the subset's K/V rows
};

struct HeadView {
  int d = 0;
  float scale = 0.0f;
  float softcap = 0.0f;  // scores soft-capped (0: none)
  int32_t window = 0;    // sliding window of the layer being attended (0: none)
  int q_heads = 0;   // query heads of the subset
  int kv_heads = 0;  // KV heads per K/V row
  std::vector<HeadSegment> segs;
};

// Layout of a subset of heads of a model with H query and G KV heads.
HeadView head_view(const HeadGroup& g, int H, int G, int d, float scale, float softcap = 0.0f);
// All heads: one segment, token-major layout.
HeadView full_head_view(int H, int G, int d, float scale, float softcap = 0.0f);
// v attending with a layer's sliding window (AttnStep::window).
inline HeadView with_window(HeadView v, int32_t window) {
  v.window = window;
  return v;
}

// Causal attention (by position; within hv.window when set, scores soft-capped by
// hv.softcap when set) of n_q queries against the K/V rows `kv`, both in
// `hv`'s layout (pages only with a view of all heads: one segment); lse (optional) in the
// same segment-major order as out; computed by `kernel`.
void attend_heads(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                  const KvRows& kv, float* out, float* lse, kernels::ThreadPool& pool,
                  AttnKernel kernel = AttnKernel::Flash);
// The same for the query rows [i0, i0 + m) only (rows of a segment are contiguous, so
// out and lse of those rows are written in place).
void attend_head_rows(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                      int64_t i0, int64_t m, const KvRows& kv, float* out, float* lse,
                      kernels::ThreadPool& pool, AttnKernel kernel = AttnKernel::Flash);
// Contiguous K/V rows k, v [n_kv][hv.kv_heads*d] at kv_pos.
void attend_heads(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                  const float* k, const float* v, const int32_t* kv_pos, int64_t n_kv,
                  float* out, float* lse, kernels::ThreadPool& pool,
                  AttnKernel kernel = AttnKernel::Flash);

// The backward of attend_heads over contiguous K/V rows, for training: one
// kernels::attention_backward call per segment. Every query-head tensor is in hv's
// layout (lse and delta as lse), K/V rows and their gradients [n_kv][hv.kv_heads*d].
// lse (and delta) are those of the queries over every key they see, so calls over
// disjoint key sets (a ring's blocks) sum to the whole gradient. No softcap.
struct HeadGradArgs {
  const float* q = nullptr;
  const int32_t* q_pos = nullptr;  // [n_q]
  int64_t n_q = 0;
  const float* k = nullptr;
  const float* v = nullptr;
  const int32_t* kv_pos = nullptr;  // [n_kv]
  int64_t n_kv = 0;
  const float* lse = nullptr;    // the forward's
  const float* dout = nullptr;
  const float* delta = nullptr;  // sum over d of dout * out (kernels::attention_delta)
  float* dq = nullptr;           // accumulated
  float* dk = nullptr;           // accumulated
  float* dv = nullptr;           // accumulated
};
void attend_heads_backward(const HeadView& hv, const HeadGradArgs& g, kernels::ThreadPool& pool);
// The same for query rows [i0, i0 + m) of g's n_q: their dq, and their share of dk and dv
// (calls over disjoint query rows sum to one call over all).
void attend_heads_backward_rows(const HeadView& hv, const HeadGradArgs& g, int64_t i0, int64_t m,
                                kernels::ThreadPool& pool);

}  // namespace tandem::parallel
