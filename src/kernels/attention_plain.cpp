// Materialized-score attention (attention_plain.hpp): the body is written once in
// attention_plain_body.inc and compiled per instruction set like isa_*.cpp; the set in
// use follows detail::isa() (so TANDEM_KERNELS_ISA and the tests' force_isa apply).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 intrinsics
#endif
#include "tandem/kernels/attention_plain.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string_view>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/fp16.hpp"

namespace tandem::kernels {
namespace {

struct PlainKernels {
  void (*pack_kt)(const AttentionArgs& a, int g, float* kt);
  void (*unit)(const AttentionArgs& a, int h, int64_t i0, int64_t i1, const float* kt, float* s,
               float* inv_l);
  int64_t (*ld)(int64_t n_kv);
};

}  // namespace
}  // namespace tandem::kernels

#define TANDEM_PER_ISA_BODY "kernels/attention_plain_body.inc"
#define TANDEM_PER_ISA_PREFIX plain
#include "kernels/per_isa.inc"

namespace tandem::kernels {
namespace {

const PlainKernels& plain_kernels() {
#ifdef TANDEM_PER_ISA_X86
  const std::string_view name = detail::isa().name;
  if (name == "avx512") return detail::plain_avx512::kPlainTable;
  if (name == "avx2") return detail::plain_avx2::kPlainTable;
#endif
  return detail::plain_generic::kPlainTable;
}

// Per-thread buffers, grown as needed and kept between calls.
struct PlainScratch {
  std::vector<float> s, kt, inv_l;
};
thread_local PlainScratch t_plain;

std::atomic<size_t> g_scratch_peak{0};

}  // namespace

size_t attention_scratch_peak() { return g_scratch_peak.load(std::memory_order_relaxed); }
void reset_attention_scratch_peak() { g_scratch_peak.store(0, std::memory_order_relaxed); }

void attention_materialized(const AttentionArgs& args, ThreadPool& pool) {
  // Paged keys are gathered into one contiguous run first (this kernel transposes K
  // per head anyway).
  thread_local KvGather gathered;
  const AttentionArgs a = gather_kv(args, gathered);
  TD_CHECK(a.H > 0 && a.G > 0 && a.H % a.G == 0 && a.d > 0);
  TD_CHECK(a.n_q >= 0 && a.n_kv >= 0 && a.kv_stride >= int64_t(a.G) * a.d);
  if (a.n_q == 0) return;
  TD_CHECK(a.q && a.out && (a.q_pos || !a.causal));
  TD_CHECK(a.n_kv == 0 || (a.k && a.v && (a.kv_pos || !a.causal)));
  const int64_t hd = int64_t(a.H) * a.d;
  if (a.n_kv == 0) {  // no key at all: zero rows, lse -inf
    std::fill(a.out, a.out + a.n_q * hd, 0.0f);
    if (a.lse) std::fill(a.lse, a.lse + a.n_q * a.H, -std::numeric_limits<float>::infinity());
    return;
  }

  // Units: (head, part of the query rows). Heads alone when they split evenly over the
  // threads; else each head's rows in nth / gcd(H, nth) parts so every thread gets the
  // same number of equal units. Every unit does the same work (nothing is skipped), so
  // threads take contiguous ranges of units, and consecutive heads share K^T (GQA).
  const int nth = pool.size();
  const int64_t row_parts =
      std::max<int64_t>(1, std::min<int64_t>(nth / std::gcd(a.H, nth), a.n_q));
  const int64_t units = int64_t(a.H) * row_parts;
  const PlainKernels& pk = plain_kernels();
  const int64_t ld = pk.ld(a.n_kv);

  const int64_t max_rows = (a.n_q + row_parts - 1) / row_parts;
  const bool parallel = !(units == 1 || a.n_q * a.n_kv * hd < (int64_t(1) << 14));
  const size_t need = size_t(parallel ? std::min<int64_t>(nth, units) : 1) *
                      size_t(max_rows * ld + ld * a.d + max_rows) * sizeof(float);
  size_t seen = g_scratch_peak.load(std::memory_order_relaxed);
  while (need > seen && !g_scratch_peak.compare_exchange_weak(seen, need)) {
  }
  auto body = [&](int tid, int n) {
    const auto [u0, u1] = split_range(units, tid, n);
    if (u0 == u1) return;
    PlainScratch& sc = t_plain;
    if (sc.s.size() < size_t(max_rows * ld)) sc.s.resize(size_t(max_rows * ld));
    if (sc.kt.size() < size_t(ld * a.d)) sc.kt.resize(size_t(ld * a.d));
    if (sc.inv_l.size() < size_t(max_rows)) sc.inv_l.resize(size_t(max_rows));
    int packed_g = -1;
    for (int64_t u = u0; u < u1; ++u) {
      const int h = int(u / row_parts);
      const int g = h / (a.H / a.G);
      if (g != packed_g) {
        pk.pack_kt(a, g, sc.kt.data());
        packed_g = g;
      }
      const auto [i0, i1] = split_range(a.n_q, int(u % row_parts), int(row_parts));
      if (i0 < i1) pk.unit(a, h, i0, i1, sc.kt.data(), sc.s.data(), sc.inv_l.data());
    }
  };
  if (!parallel)
    body(0, 1);
  else
    pool.run(std::cref(body));
}

}  // namespace tandem::kernels
