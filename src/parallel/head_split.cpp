#include "tandem/parallel/head_split.hpp"

#include <algorithm>
#include <limits>

#include "tandem/core/error.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/parallel/attention_kernel.hpp"

namespace tandem::parallel {

std::vector<HeadGroup> split_heads(int H, int G, int parts) {
  TD_CHECK(H >= 1 && G >= 1 && H % G == 0 && parts >= 1);
  const int gs = H / G;  // query heads per KV head
  std::vector<HeadGroup> groups(static_cast<size_t>(parts));
  for (int r = 0; r < parts; ++r) {
    const auto [b, e] = kernels::split_range(H, r, parts);
    HeadGroup& g = groups[size_t(r)];
    g.h0 = int(b);
    g.nh = int(e - b);
    if (g.nh > 0) {
      g.g0 = g.h0 / gs;
      g.ng = (g.h0 + g.nh - 1) / gs + 1 - g.g0;
    }
  }
  return groups;
}

HeadView head_view(const HeadGroup& g, int H, int G, int d, float scale, float softcap) {
  TD_CHECK(H >= 1 && G >= 1 && H % G == 0 && g.h0 >= 0 && g.nh >= 0 && g.h0 + g.nh <= H);
  const int gs = H / G;
  HeadView hv;
  hv.d = d;
  hv.scale = scale;
  hv.softcap = softcap;
  hv.q_heads = g.nh;
  hv.kv_heads = g.ng;
  // One segment per KV head; consecutive KV heads whose whole group of query heads is
  // in the subset merge into one segment (uniform grouping).
  for (int kv = g.g0; kv < g.g0 + g.ng; ++kv) {
    const int lo = std::max(kv * gs, g.h0), hi = std::min((kv + 1) * gs, g.h0 + g.nh);
    if (hi <= lo) continue;
    const HeadSegment s{lo - g.h0, hi - lo, kv - g.g0, 1};
    if (!hv.segs.empty()) {
      HeadSegment& last = hv.segs.back();
      if (last.nq == last.nkv * gs && s.nq == gs) {
        last.nq += gs;
        last.nkv += 1;
        continue;
      }
    }
    hv.segs.push_back(s);
  }
  // The segments tile the subset's query heads and stay inside its KV heads (memory safety).
  int next = 0;
  for (const HeadSegment& s : hv.segs) {
    TD_CHECK(s.q0 == next && s.nq > 0 && s.nkv > 0 && s.nq % s.nkv == 0 && s.kv0 >= 0 &&
             s.kv0 + s.nkv <= g.ng);
    next += s.nq;
  }
  TD_CHECK(next == g.nh);
  return hv;
}

HeadView full_head_view(int H, int G, int d, float scale, float softcap) {
  return head_view(HeadGroup{0, H, 0, G}, H, G, d, scale, softcap);
}

void attend_heads(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                  const KvRows& kv, float* out, float* lse, kernels::ThreadPool& pool,
                  AttnKernel kernel) {
  attend_head_rows(hv, q, q_pos, n_q, 0, n_q, kv, out, lse, pool, kernel);
}

void attend_heads(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                  const float* k, const float* v, const int32_t* kv_pos, int64_t n_kv,
                  float* out, float* lse, kernels::ThreadPool& pool, AttnKernel kernel) {
  attend_head_rows(hv, q, q_pos, n_q, 0, n_q, KvRows{k, v, kv_pos, n_kv, {}}, out, lse, pool,
                   kernel);
}

void attend_head_rows(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                      int64_t i0, int64_t m, const KvRows& kv, float* out, float* lse,
                      kernels::ThreadPool& pool, AttnKernel kernel) {
  TD_CHECK(i0 >= 0 && m >= 0 && i0 + m <= n_q);
  if (m == 0 || hv.q_heads == 0) return;
  const bool paged = kv.pages.tokens > 0;
  // Pages hold rows of every KV head: only a view of all heads (one segment) reads them.
  TD_CHECK(!paged || (hv.segs.size() == 1 && hv.segs[0].kv0 == 0));
  const int64_t d = hv.d;
  // Segment s holds [n_q][nq][d] at n_q*q0*d (lse [n_q][nq] at n_q*q0).
  for (const HeadSegment& s : hv.segs) {
    float* o = out + n_q * s.q0 * d + i0 * s.nq * d;
    float* l = lse ? lse + n_q * s.q0 + i0 * s.nq : nullptr;
    if (kv.n == 0) {  // no keys: empty partial
      std::fill(o, o + m * s.nq * d, 0.0f);
      if (l) std::fill(l, l + m * s.nq, -std::numeric_limits<float>::infinity());
      continue;
    }
    kernels::AttentionArgs a;
    a.q = q + n_q * s.q0 * d + i0 * s.nq * d;
    a.q_pos = q_pos + i0;
    a.n_q = m;
    if (paged) {
      a.pages = kv.pages;
    } else {
      a.k = kv.k + s.kv0 * d;
      a.v = kv.v + s.kv0 * d;
      a.kv_pos = kv.pos;
      a.kv_stride = int64_t(hv.kv_heads) * d;
    }
    a.n_kv = kv.n;
    a.H = s.nq;
    a.G = s.nkv;
    a.d = hv.d;
    a.scale = hv.scale;
    a.softcap = hv.softcap;
    a.window = hv.window;
    a.out = o;
    a.lse = l;
    run_attention(a, kernel, pool);
  }
}

void attend_heads_backward(const HeadView& hv, const HeadGradArgs& g, kernels::ThreadPool& pool) {
  attend_heads_backward_rows(hv, g, 0, g.n_q, pool);
}

void attend_heads_backward_rows(const HeadView& hv, const HeadGradArgs& g, int64_t i0, int64_t m,
                                kernels::ThreadPool& pool) {
  TD_CHECK(hv.softcap == 0.0f && g.n_q >= 0 && g.n_kv >= 0);
  TD_CHECK(i0 >= 0 && m >= 0 && i0 + m <= g.n_q);
  if (m == 0 || g.n_kv == 0 || hv.q_heads == 0) return;
  TD_CHECK(g.delta != nullptr);  // the kernel then reads no out
  const int64_t d = hv.d, nq = g.n_q;
  for (const HeadSegment& s : hv.segs) {
    // Segment s: query-head tensors [n_q][nq][d] at n_q*q0*d (lse, delta at n_q*q0); rows
    // from i0 on.
    const int64_t qo = nq * s.q0 * d + i0 * s.nq * d, lo = nq * s.q0 + i0 * s.nq;
    kernels::AttentionBackwardArgs b;
    kernels::AttentionArgs& a = b.fwd;
    a.q = g.q + qo;
    a.q_pos = g.q_pos + i0;
    a.n_q = m;
    a.k = g.k + s.kv0 * d;
    a.v = g.v + s.kv0 * d;
    a.kv_pos = g.kv_pos;
    a.n_kv = g.n_kv;
    a.kv_stride = int64_t(hv.kv_heads) * d;
    a.H = s.nq;
    a.G = s.nkv;
    a.d = hv.d;
    a.scale = hv.scale;
    a.window = hv.window;
    a.causal = true;
    a.lse = const_cast<float*>(g.lse + lo);  // read only by the backward
    b.dout = g.dout + qo;
    b.delta = g.delta + lo;
    b.dq = g.dq + qo;
    b.dk = g.dk + s.kv0 * d;
    b.dv = g.dv + s.kv0 * d;
    kernels::attention_backward(b, pool);
  }
}

}  // namespace tandem::parallel
