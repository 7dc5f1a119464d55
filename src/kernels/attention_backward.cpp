// kernels::attention_backward and attention_delta (backward.hpp). The unit kernel is
// written once in attention_backward_body.inc and compiled per instruction set; this file
// checks the arguments and deals the units to the threads.
//
// Threads: a unit (KV head g, tile of queries) writes the dq rows of its queries and heads,
// which no other unit writes, and adds to the dk/dv slice [n_kv][g]. Two ways to keep the
// threads apart, no atomics, no recomputation:
//   - by KV head, when the threads divide G: thread t takes the KV heads g = t mod nth,
//     every query tile; nothing is shared, the results go straight to the caller's
//     buffers, and the work is even (every KV head costs the same).
//   - else by query tile: every thread past the first adds dk, dv to a zeroed partial
//     buffer [n_kv][G][d] of its own, summed into the caller's at the end (memory
//     O(threads * n_kv * G * d), written and read once per call). Under a causal mask
//     later tiles see more keys: tiles are dealt costliest first to the least loaded
//     thread.
// The alternative of a second pass over the key tiles for dk/dv recomputes the scores
// and dP (7 products of [tile][tile][d] per pair of tiles instead of 5).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 intrinsics
#endif
#include "kernels/attention_backward.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string_view>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/held_bytes.hpp"
#include "tandem/core/fp16.hpp"

#define TANDEM_PER_ISA_BODY "kernels/attention_backward_body.inc"
#define TANDEM_PER_ISA_PREFIX attn_bwd
#include "kernels/per_isa.inc"

namespace tandem::kernels {
namespace detail {

const AttnBwdKernels& attn_bwd_kernels() {
#ifdef TANDEM_PER_ISA_X86
  const std::string_view name = isa().name;
  if (name == "avx512") return attn_bwd_avx512::kAttnBwdTable;
  if (name == "avx2") return attn_bwd_avx2::kAttnBwdTable;
#endif
  return attn_bwd_generic::kAttnBwdTable;
}

void check_attention_backward(const AttentionBackwardArgs& b) {
  const AttentionArgs& a = b.fwd;
  if (a.softcap != 0.0f)
    bad_input("attention_backward: AttentionArgs.softcap = {} is not supported (no soft-capping "
              "in training)",
              a.softcap);
  if (a.pages.tokens > 0)
    bad_input("attention_backward: AttentionArgs.pages is not supported (contiguous f32 keys "
              "only)");
  TD_CHECK(a.H > 0 && a.G > 0 && a.H % a.G == 0 && a.d > 0);
  TD_CHECK(a.n_q >= 0 && a.n_kv >= 0 && a.kv_stride >= int64_t(a.G) * a.d && a.window >= 0);
  if (a.n_q == 0 || a.n_kv == 0) return;
  TD_CHECK(a.q && a.k && a.v && a.lse && b.dout && b.dq && b.dk && b.dv);
  TD_CHECK(b.delta || a.out);
  TD_CHECK(!a.causal || (a.q_pos && a.kv_pos));
}

}  // namespace detail

void attention_delta(const float* out, const float* dout, int64_t n_q, int H, int d,
                     float* delta) {
  for (int64_t r = 0; r < n_q * H; ++r) {
    const float* o = out + r * d;
    const float* g = dout + r * d;
    float s = 0.0f;
    for (int c = 0; c < d; ++c) s += o[c] * g[c];
    delta[r] = s;
  }
}

namespace {

struct BwdScratch {
  std::vector<float> qc, oc, p, ds, lse, delta;
  std::vector<const float*> q, dout, k;
  std::vector<float*> dq, dk, dv;
  detail::AttnBwdScratch get(const detail::AttnBwdKernels& kn, int group, int d) {
    const size_t nx = size_t(group) * size_t(kn.tile_q), tk = size_t(kn.tile_k);
    qc.resize(nx * size_t(d));
    oc.resize(nx * size_t(d));
    p.resize(nx * tk);
    ds.resize(nx * tk);
    lse.resize(nx);
    delta.resize(nx);
    q.resize(nx);
    dout.resize(nx);
    dq.resize(nx);
    k.resize(tk);
    dk.resize(tk);
    dv.resize(tk);
    return {qc.data(), oc.data(), p.data(),  ds.data(), lse.data(), delta.data(), q.data(),
            dout.data(), dq.data(), k.data(),  dk.data(),  dv.data()};
  }
};
thread_local BwdScratch t_scratch;
thread_local std::vector<float> t_parts;  // the caller's partial dk, dv of threads 1..
thread_local std::vector<float> t_kvt;    // the caller's K and V transposed per key tile

}  // namespace

size_t attention_backward_scratch_bytes(int64_t n_q, int64_t n_kv, int G, int d, int threads) {
  const detail::AttnBwdKernels& kn = detail::attn_bwd_kernels();
  const int64_t tk = kn.tile_k, tiles = (n_q + kn.tile_q - 1) / kn.tile_q;
  size_t floats = size_t(2 * G * ((n_kv + tk - 1) / tk) * tk * d);  // t_kvt
  if (threads > 1 && G % threads != 0)                               // t_parts
    floats += size_t(2 * n_kv * G * d * (std::min<int64_t>(threads, tiles) - 1));
  return floats * sizeof(float);
}

void attention_backward(const AttentionBackwardArgs& b, ThreadPool& pool) {
  detail::check_attention_backward(b);
  const AttentionArgs& a = b.fwd;
  if (a.n_q == 0 || a.n_kv == 0) return;
  const detail::AttnBwdKernels& kn = detail::attn_bwd_kernels();
  const int G = a.G, group = a.H / a.G;
  const int64_t tiles = (a.n_q + kn.tile_q - 1) / kn.tile_q;
  const int64_t kvd = int64_t(G) * a.d;
  int nth = pool.size();
  if (a.n_q * a.n_kv * a.H * int64_t(a.d) < (int64_t(1) << 15)) nth = 1;
  auto run = [&](const std::function<void(int, int)>& f) {
    if (nth == 1)
      f(0, 1);
    else
      pool.run(f);
  };
  // K and V transposed once per call, per KV head and key tile: [G][tiles][d][tile_k]
  // each (keys past n_kv zero), read by every query tile.
  const int tk = kn.tile_k;
  const int64_t ktiles = (a.n_kv + tk - 1) / tk, per_g = ktiles * tk * a.d;
  grow_scratch(t_kvt, size_t(2 * G * per_g));
  float* const kt = t_kvt.data();
  float* const vt = kt + G * per_g;
  run([&](int tid, int n) {
    const auto [u0, u1] = split_range(G * ktiles, tid, n);
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t g = u / ktiles, j0 = (u % ktiles) * tk, off = g * per_g + j0 * a.d;
      for (int c = 0; c < a.d; ++c)
        for (int j = 0; j < tk; ++j) {
          const bool in = j0 + j < a.n_kv;
          const int64_t src = (j0 + j) * a.kv_stride + g * a.d + c;
          kt[off + c * tk + j] = in ? a.k[src] : 0.0f;
          vt[off + c * tk + j] = in ? a.v[src] : 0.0f;
        }
    }
  });
  auto unit = [&](int g, int64_t t, float* dk, float* dv, int64_t stride) {
    const int64_t i0 = t * kn.tile_q;
    const detail::AttnBwdUnit u{g,  i0,     int(std::min<int64_t>(kn.tile_q, a.n_q - i0)),
                                dk, dv,     stride,
                                kt + g * per_g, vt + g * per_g};
    kn.unit(b, u, t_scratch.get(kn, group, a.d));
  };
  if (nth == 1 || G % nth == 0) {
    auto by_head = [&](int tid, int n) {
      for (int g = tid; g < G; g += n)
        for (int64_t t = 0; t < tiles; ++t) unit(g, t, b.dk, b.dv, a.kv_stride);
    };
    run(by_head);
    return;
  }
  // By query tile. Each tile goes to the thread with the least work so far, costliest
  // tile first (its cost: the key tiles it does not skip); a static deal, so the sums
  // are the same from run to run. Threads 1.. that get tiles add dk and dv to partial
  // buffers of their own ([active-1][2][n_kv][G*d]).
  std::vector<int64_t> cost(static_cast<size_t>(tiles), ktiles);
  std::vector<int64_t> order(static_cast<size_t>(tiles));
  if (a.causal) {
    std::vector<int32_t> kmin(size_t(ktiles), std::numeric_limits<int32_t>::max()),
        kmax(size_t(ktiles), std::numeric_limits<int32_t>::min());
    for (int64_t j = 0; j < a.n_kv; ++j) {
      kmin[size_t(j / tk)] = std::min(kmin[size_t(j / tk)], a.kv_pos[j]);
      kmax[size_t(j / tk)] = std::max(kmax[size_t(j / tk)], a.kv_pos[j]);
    }
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t i0 = t * kn.tile_q, i1 = std::min(a.n_q, i0 + kn.tile_q);
      const int32_t qmin = *std::min_element(a.q_pos + i0, a.q_pos + i1);
      const int32_t qmax = *std::max_element(a.q_pos + i0, a.q_pos + i1);
      cost[size_t(t)] = 0;
      for (int64_t u = 0; u < ktiles; ++u)
        cost[size_t(t)] += kmin[size_t(u)] <= qmax &&
                           (a.window <= 0 || int64_t(qmin) - kmax[size_t(u)] < a.window);
    }
  }
  for (int64_t t = 0; t < tiles; ++t) order[size_t(t)] = t;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t x, int64_t y) { return cost[size_t(x)] > cost[size_t(y)]; });
  const int active = int(std::min<int64_t>(nth, tiles));
  std::vector<int> owner(static_cast<size_t>(tiles));
  std::vector<int64_t> load(static_cast<size_t>(active), 0);
  for (int64_t t : order) {
    const int to = int(std::min_element(load.begin(), load.end()) - load.begin());
    owner[size_t(t)] = to;
    load[size_t(to)] += cost[size_t(t)] + 1;
  }
  const int64_t part = a.n_kv * kvd;
  grow_scratch(t_parts, size_t(2 * part * (active - 1)));
  float* const parts = t_parts.data();  // the caller's: thread_local names differ per thread
  auto by_tile = [&](int tid, int) {
    if (tid >= active) return;
    float* dk = tid == 0 ? b.dk : parts + 2 * part * (tid - 1);
    float* dv = tid == 0 ? b.dv : dk + part;
    const int64_t stride = tid == 0 ? a.kv_stride : kvd;
    if (tid > 0) std::fill(dk, dk + 2 * part, 0.0f);
    for (int64_t t = 0; t < tiles; ++t)
      if (owner[size_t(t)] == tid)
        for (int g = 0; g < G; ++g) unit(g, t, dk, dv, stride);
  };
  pool.run(std::cref(by_tile));
  auto reduce = [&](int tid, int n) {
    const auto [j0, j1] = split_range(a.n_kv, tid, n);
    for (int s = 0; s + 1 < active; ++s) {
      const float* pk = parts + 2 * part * s;
      const float* pv = pk + part;
      for (int64_t j = j0; j < j1; ++j) {
        float* dk = b.dk + j * a.kv_stride;
        float* dv = b.dv + j * a.kv_stride;
        for (int64_t e = 0; e < kvd; ++e) {
          dk[e] += pk[j * kvd + e];
          dv[e] += pv[j * kvd + e];
        }
      }
    }
  };
  pool.run(std::cref(reduce));
}

}  // namespace tandem::kernels
