#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "kernels/attention_flash.hpp"
#include "kernels/isa.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/quant_rows.hpp"
#include "tandem/kernels/attention_merge.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::kernels {
namespace {

// Fewest keys worth giving a thread of their own when the keys are split.
constexpr int64_t kMinKeysPerSplit = 256;

// Per-thread scratch, kept between calls (attention runs once per layer and token).
struct ThreadScratch {
  std::vector<float> s, mx;
  std::vector<double> l;
  std::vector<int64_t> idx;
  std::vector<float> kb, vb;
  detail::AttnScratch get(int H, int64_t kv_floats) {
    s.resize(size_t(H) * detail::kAttnBlock);
    mx.resize(size_t(H));
    l.resize(size_t(H));
    idx.resize(detail::kAttnBlock);
    kb.resize(size_t(kv_floats));
    vb.resize(size_t(kv_floats));
    return {s.data(), mx.data(), l.data(), idx.data(), kb.data(), vb.data()};
  }
};
thread_local ThreadScratch t_scratch;

struct TileScratch {
  std::vector<float> qt, s, mx, l, kb, vb;
  // lanes: the queries of one sub-tile; subs: the sub-tiles of a tile.
  detail::AttnTileScratch get(int heads, int d, int lanes, int subs, int64_t kv_floats) {
    const size_t queries = size_t(lanes) * size_t(subs);
    qt.resize(size_t(heads) * size_t(d) * queries);
    s.resize(size_t(detail::kAttnBlock) * size_t(lanes) + 8);  // + 8: PV reads 8 lanes
    mx.resize(size_t(heads) * queries);
    l.resize(size_t(heads) * queries);
    kb.resize(size_t(kv_floats));
    vb.resize(size_t(kv_floats));
    return {qt.data(), s.data(), mx.data(), l.data(), kb.data(), vb.data()};
  }
};
thread_local TileScratch t_tile_scratch;
thread_local std::vector<float> t_parts;  // split partial results (caller thread)

std::atomic<bool> g_flash{true};

}  // namespace

namespace detail {
bool flash_attention() { return g_flash.load(std::memory_order_relaxed); }
void set_flash_attention(bool on) { g_flash.store(on, std::memory_order_relaxed); }
}  // namespace detail

static void check_pages(const KvPages& p, int G, int d) {
  const int64_t kvd = int64_t(G) * d;
  TD_CHECK(p.page != nullptr);
  if (p.type == DType::F32) {
    TD_CHECK(p.row_bytes >= size_t(kvd) * sizeof(float) && p.row_bytes % sizeof(float) == 0);
  } else {
    TD_CHECK(p.type == DType::Q8_0 && kvd % kQBlock == 0 &&
             p.row_bytes >= row_bytes(DType::Q8_0, kvd));
  }
}

AttentionArgs gather_kv(const AttentionArgs& a, KvGather& buf) {
  if (a.pages.tokens == 0) return a;
  check_pages(a.pages, a.G, a.d);
  const int64_t kvd = int64_t(a.G) * a.d, T = a.pages.tokens;
  buf.k.resize(size_t(a.n_kv * kvd));
  buf.v.resize(size_t(a.n_kv * kvd));
  buf.pos.resize(size_t(a.n_kv));
  for (int64_t j = 0; j < a.n_kv; ++j) {
    const KvPage& pg = a.pages.page[j / T];
    const size_t off = size_t(j % T) * a.pages.row_bytes;
    dequantize_row(a.pages.type, static_cast<const std::byte*>(pg.k) + off, &buf.k[size_t(j * kvd)],
                   kvd);
    dequantize_row(a.pages.type, static_cast<const std::byte*>(pg.v) + off, &buf.v[size_t(j * kvd)],
                   kvd);
    buf.pos[size_t(j)] = pg.pos[j % T];
  }
  AttentionArgs c = a;
  c.pages = {};
  c.k = buf.k.data();
  c.v = buf.v.data();
  c.kv_pos = buf.pos.data();
  c.kv_stride = kvd;
  return c;
}

void attention(const AttentionArgs& a, ThreadPool& pool) {
  TD_CHECK(a.H > 0 && a.G > 0 && a.H % a.G == 0 && a.d > 0);
  const bool paged = a.pages.tokens > 0;
  TD_CHECK(a.n_q >= 0 && a.n_kv >= 0 && (paged || a.kv_stride >= int64_t(a.G) * a.d));
  if (a.n_q == 0) return;
  TD_CHECK(a.q && a.out && (a.q_pos || !a.causal) && a.window >= 0 && a.softcap >= 0.0f);
  if (paged && a.n_kv > 0) check_pages(a.pages, a.G, a.d);
  TD_CHECK(a.n_kv == 0 || paged || (a.k && a.v && (a.kv_pos || !a.causal)));
  const int64_t kv_floats = detail::kv_scratch_floats(a);

  // A unit is one query against a range of keys, all heads, so K and V rows are read
  // whole and in order. With fewer queries than threads (decode) the keys are split
  // too, and the partial results are merged by their lse afterwards.
  const int nth = pool.size();
  const int64_t hd = int64_t(a.H) * a.d;
  int64_t splits = 1;
  if (a.n_q < nth)
    splits = std::max<int64_t>(1, std::min<int64_t>((nth + a.n_q - 1) / a.n_q,
                                                    a.n_kv / kMinKeysPerSplit));
  const int64_t units = a.n_q * splits;
  const detail::FlashKernels& flash = detail::flash_kernels();
  const detail::AttnFn fn = flash.unit;

  // Prefill: flash-attention tiles of up to kAttnSubTiles sub-tiles of tile_q queries
  // (all heads), used when there are at least as many sub-tiles as threads, else
  // per-query units keep every thread busy. A tile holds as many sub-tiles as leave each
  // thread two tiles or more; tiles are dealt in a snake order (0 1 .. n-1 n-1 .. 1 0 ..):
  // under a causal mask later tiles see more keys, and the snake evens the threads' sums.
  const int lanes = flash.tile_q;
  const int64_t subtiles = (a.n_q + lanes - 1) / lanes;
  if (splits == 1 && a.n_q > 1 && subtiles >= nth && g_flash.load(std::memory_order_relaxed)) {
    const int64_t per =
        std::clamp<int64_t>(subtiles / (2 * int64_t(nth)), 1, detail::kAttnSubTiles);
    const int64_t span = per * lanes;
    const int64_t tiles = (a.n_q + span - 1) / span;
    auto tile_body = [&](int tid, int n) {
      const detail::AttnTileScratch sc =
          t_tile_scratch.get(a.H, a.d, lanes, detail::kAttnSubTiles, kv_floats);
      for (int64_t r = 0; r * n < tiles; ++r) {
        const int64_t u = r * n + (r % 2 == 0 ? tid : n - 1 - tid);
        if (u >= tiles) continue;
        const int64_t i0 = u * span;
        flash.tile(a, i0, int(std::min<int64_t>(span, a.n_q - i0)), sc);
      }
    };
    if (tiles == 1 || a.n_q * a.n_kv * hd < (int64_t(1) << 14))
      tile_body(0, 1);
    else
      pool.run(std::cref(tile_body));
    return;
  }

  float* parts = nullptr;  // [units][H][d] outputs, then [units][H] lse
  if (splits > 1) {
    t_parts.resize(size_t(units * (hd + a.H)));
    parts = t_parts.data();
  }
  // Units are dealt round robin: under a causal mask later queries see more keys, so
  // contiguous ranges would load the threads unevenly.
  auto body = [&](int tid, int n) {
    const detail::AttnScratch sc = t_scratch.get(a.H, kv_floats);
    for (int64_t u = tid; u < units; u += n) {
      const int64_t i = u / splits;
      if (splits == 1) {
        fn(a, i, 0, a.n_kv, a.out + i * hd, a.lse ? a.lse + i * a.H : nullptr, sc);
      } else {
        const auto [j0, j1] = split_range(a.n_kv, int(u % splits), int(splits));
        fn(a, i, j0, j1, parts + u * hd, parts + units * hd + u * a.H, sc);
      }
    }
  };
  if (units == 1 || a.n_q * a.n_kv * hd < (int64_t(1) << 14))
    body(0, 1);
  else
    pool.run(std::cref(body));  // by reference: no std::function allocation
  if (splits == 1) return;

  // Merge the key splits of each query by log-sum-exp, the same merge sequence
  // parallelism uses across ranks.
  const float* part_lse = parts + units * hd;
  thread_local std::vector<float> lse_row;
  lse_row.resize(size_t(a.H));
  for (int64_t i = 0; i < a.n_q; ++i) {
    const int64_t u0 = i * splits;
    float* out = a.out + i * hd;
    std::copy(parts + u0 * hd, parts + (u0 + 1) * hd, out);
    std::copy(part_lse + u0 * a.H, part_lse + (u0 + 1) * a.H, lse_row.begin());
    for (int64_t s = 1; s < splits; ++s)
      attention_merge(out, lse_row.data(), parts + (u0 + s) * hd, part_lse + (u0 + s) * a.H, 1,
                      a.H, a.d);
    if (a.lse) std::copy(lse_row.begin(), lse_row.end(), a.lse + i * a.H);
  }
}

}  // namespace tandem::kernels
