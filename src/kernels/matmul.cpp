#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels/isa.hpp"
#include "kernels/spin.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/held_bytes.hpp"
#include "tandem/kernels/fused.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::kernels {
namespace {

// Below this many multiply-adds the op runs on the calling thread alone.
constexpr int64_t kMinParallelWork = int64_t(1) << 15;
// Tokens whose x rows are kept hot (L2) while a thread sweeps its weight rows.
constexpr int64_t kTokenBlockBytes = int64_t(256) << 10;

thread_local std::vector<uint8_t> t_xq;  // quantized activations (caller thread)
thread_local std::vector<float> t_xn;    // normalized activations (caller thread)
thread_local std::vector<float> t_xl;    // activations with tokens in lanes (caller thread)
thread_local std::vector<float> t_up;    // up-projection tiles of a SwiGLU run (each thread)
// Units (row groups) per SwiGLU run.
constexpr int64_t kGluUnits = 16;

// One block of 32: q = nearest integer to x / d with d = max|x| / 127; returns d.
float quant_block(const float* x, int8_t* q) {
  float amax = 0.0f;
  for (int j = 0; j < kQBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  // Nearest integer, ties to even as std::nearbyint, without a libm call (|v| <= 128).
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  for (int j = 0; j < kQBlock; ++j) q[j] = int8_t(int((x[j] * id + kRound) - kRound));
  return d;
}

}  // namespace

namespace detail {

void quantize_x_plain(const float* x, int64_t cols, uint8_t* out) {
  auto* ds = reinterpret_cast<float*>(out + cols);
  for (int64_t b = 0; b < cols / kQBlock; ++b)
    ds[b] = quant_block(x + b * kQBlock, reinterpret_cast<int8_t*>(out) + b * kQBlock);
}

void pack_vnni16(const Weight& w, uint8_t* out, const Vnni16Values& v) {
  const int64_t nb = w.cols / kQBlock;
  const int64_t panels = (w.rows + kPackRows - 1) / kPackRows;
  const size_t bb = info(w.type).block_bytes;
  const int nv = v.vectors;
  TD_CHECK(nv >= 1 && nv <= 8);  // 4 * nv bytes of codes a block
  const int scales = v.min ? 128 : 64;
  const int64_t pair_bytes = vnni16_pair_bytes(nv, v.min);
  const int64_t panel_bytes = (nb + 1) / 2 * pair_bytes;
  const auto* base = static_cast<const uint8_t*>(w.data);
  for (int64_t p = 0; p < panels; ++p) {
    const int n = int(std::min<int64_t>(kPackRows, w.rows - p * kPackRows));
    uint8_t* po = out + p * panel_bytes;
    std::memset(po, 0, size_t(panel_bytes));
    for (int i = 0; i < n; ++i) {
      const uint8_t* row = base + size_t(p * kPackRows + i) * w.row_stride;
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t codes[kQBlock];  // 4 * nv bytes
        uint16_t d, m;
        v.values(row + size_t(b) * bb, codes, d, m);
        uint8_t* pair = po + (b / 2) * pair_bytes;
        const int h = int(b & 1);
        std::memcpy(pair + 32 * h + 2 * i, &d, 2);
        if (v.min) std::memcpy(pair + 64 + 32 * h + 2 * i, &m, 2);
        uint8_t* q = pair + scales + h * 64 * nv + 4 * i;
        for (int j = 0; j < nv; ++j) std::memcpy(q + 64 * j, codes + 4 * j, 4);
      }
    }
  }
}

}  // namespace detail

namespace {
// The packed layout of w's type in the kernels in use; null where it has none.
const detail::PackFormat* pack_format(const Weight& w) {
  const detail::TypeKernels* e = detail::type_kernels(detail::isa(), w.type);
  return e && w.rows > 0 && w.cols > 0 ? e->pack : nullptr;
}
}  // namespace

size_t packed_size(const Weight& w) {
  const detail::PackFormat* f = pack_format(w);
  if (!f) return 0;
  return size_t((w.rows + detail::kPackRows - 1) / detail::kPackRows * f->panel_bytes(w.cols));
}

int pack_weight(const Weight& w, uint8_t* out) {
  TD_CHECK(packed_size(w) > 0 && reinterpret_cast<uintptr_t>(out) % 64 == 0);
  const detail::PackFormat* f = pack_format(w);
  f->pack(w, out);
  return f->layout;
}

void matmul(const Weight& w, const float* x, int64_t m, float* y, ThreadPool& pool,
            const float* bias) {
  // Reused per thread: no allocation per call (this runs for every matrix of every step).
  thread_local FusedMatmul f;
  f.outs.assign(1, {w, y, bias, 0});
  f.plan.n = -1;  // another weight than the last call's: planned for this call
  matmul_fused(f, x, 0, m, pool);
}

size_t matmul_scratch_bytes(const Weight& w, int64_t m, int threads) {
  if (m <= 0) return 0;
  FusedMatmul f;
  f.outs.assign(1, {w, nullptr, nullptr, 0});
  MatmulPlan p;
  plan_matmul(f, m, threads, p);
  size_t bytes = 0;
  if (p.quantize_x) bytes += size_t(m * p.xqs);
  if (p.lanes_tile)
    bytes += size_t((m + p.lane_tokens - 1) / p.lane_tokens * p.lane_tokens * w.cols) * sizeof(float);
  return bytes;
}

namespace {

// All threads of one pool.run wait here until every one has arrived (used once).
class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  void arrive_and_wait() {
    count_.fetch_add(1, std::memory_order_acq_rel);
    for (int i = 1; count_.load(std::memory_order_acquire) < n_; ++i) detail::spin_step(i);
  }

 private:
  const int n_;
  std::atomic<int> count_{0};
};

// One unit of work: a group of up to tile_rows rows of one output.
using Unit = MatmulPlan::Unit;
using Kernel = MatmulPlan::Kernel;

// What a tile does after its dot products: SwiGLU against the up tile, rotary embedding.
void epilogue(const FusedMatmul& f, const MatmulOut& o, float* y, int64_t ldy, int64_t r,
              int rows, int64_t row0, int mt, const float* up, int64_t ldu) {
  if (f.glu)
    for (int t = 0; t < mt; ++t) detail::isa().swiglu(y + t * ldy, up + t * ldu, y + t * ldy, rows);
  if (o.rope_d > 0) {
    const RopeTable& rt = *f.rope;
    const int half = rt.n_rot / 2;
    for (int t = 0; t < mt; ++t) {
      const float* cs = rt.cos.data() + (row0 + t) * half;
      const float* sn = rt.sin.data() + (row0 + t) * half;
      float* yt = y + t * ldy;
      for (int c = 0; c < rows; c += 2) {
        const int64_t cc = (r + c) % o.rope_d;
        if (cc >= rt.n_rot) continue;
        const float a0 = yt[c], a1 = yt[c + 1], co = cs[cc / 2], si = sn[cc / 2];
        yt[c] = a0 * co - a1 * si;
        yt[c + 1] = a0 * si + a1 * co;
      }
    }
  }
}

void check_spec(const FusedMatmul& f, int tile_rows) {
  TD_CHECK(!f.outs.empty());
  const Weight& w0 = f.outs[0].w;
  TD_CHECK(w0.rows >= 0 && w0.cols >= 0 && w0.cols % info(w0.type).block_size == 0);
  for (const MatmulOut& o : f.outs) {
    TD_CHECK(o.w.cols == w0.cols && o.w.type == w0.type && o.w.rows >= 0);
    if (o.rope_d > 0) {
      TD_CHECK(f.rope && o.rope_d % 2 == 0 && o.w.rows % o.rope_d == 0 && tile_rows % 2 == 0);
      TD_CHECK(f.rope->n_rot <= o.rope_d);
    }
  }
  if (f.glu) TD_CHECK(f.outs.size() == 2 && f.outs[1].w.rows == w0.rows && f.outs[1].rope_d == 0);
}

std::atomic<uint64_t> g_plans{0};

}  // namespace

uint64_t matmul_plans_made() { return g_plans.load(std::memory_order_relaxed); }

void plan_matmul(const FusedMatmul& f, int64_t n, int threads, MatmulPlan& p) {
  g_plans.fetch_add(1, std::memory_order_relaxed);
  const detail::IsaKernels& k = detail::isa();
  check_spec(f, k.tile_rows);
  TD_CHECK(n >= 0 && threads >= 1);
  p.isa = &k;
  p.n = n;
  p.threads = threads;
  p.int8 = detail::int8_activations();
  p.packed = detail::use_packed();
  p.lanes = detail::lane_tiles();
  const Weight& w0 = f.outs[0].w;
  const int64_t cols = w0.cols;
  // The kernels of the weights' type (all outputs have it): picked here, once per plan.
  const detail::TypeKernels* e = detail::type_kernels(k, w0.type);
  if (!e) fail(ErrorKind::Internal, "matmul: unsupported weight type {}", dtype_name(w0.type));
  p.plain = reinterpret_cast<MatmulPlan::Fn>(e->tile);
  // Types with integer tiles: activations quantized to 8 bits once, then integer products.
  const detail::QTileFn qfn = p.int8 && cols > 0 ? e->qtile : nullptr;
  // Tiles over repacked weights, for the outputs whose weight has the type's layout.
  const detail::PackedQTileFn pfn = qfn && e->pack && p.packed ? e->packed : nullptr;
  const int layout = pfn ? e->pack->layout : detail::kPackNone;
  // F32 weights over lane_tokens / 2 tokens or more (a continuous-batching decode step,
  // prefill): tiles with the tokens in vector lanes, each weight row read once per group.
  const detail::LanesTileFn lfn =
      p.lanes && !qfn && k.lane_tokens > 0 && n >= k.lane_tokens / 2 ? e->lanes : nullptr;
  p.lanes_tile = reinterpret_cast<MatmulPlan::Fn>(lfn);
  p.lane_tokens = lfn ? k.lane_tokens : 0;
  p.int8_tile = reinterpret_cast<MatmulPlan::Fn>(qfn);
  p.packed_tile = reinterpret_cast<MatmulPlan::Fn>(pfn);
  p.quantize_x = reinterpret_cast<MatmulPlan::Fn>(qfn ? e->quantize_x : nullptr);
  p.panel_bytes = pfn ? e->pack->panel_bytes(cols) : 0;
  p.kernel.clear();
  for (const MatmulOut& o : f.outs)
    p.kernel.push_back(cols == 0 ? Kernel::Bias
                       : pfn && o.w.packed && o.w.packed_layout == layout
                           ? Kernel::Packed
                       : qfn ? Kernel::Int8
                       : lfn ? Kernel::Lanes
                             : Kernel::Plain);
  p.nr = qfn ? k.qtile_rows : lfn ? detail::kLaneRows : k.tile_rows;
  TD_CHECK(!pfn || p.nr % detail::kPackRows == 0);
  // Tokens per tile call: the integer tiles may take more than kTileTokens.
  p.tile_tokens = qfn ? k.qtile_tokens : lfn ? k.lane_tokens : detail::kTileTokens;
  TD_CHECK(p.tile_tokens >= 1 && p.tile_tokens <= detail::kMaxQTileTokens);
  p.units.clear();
  int64_t total_rows = 0;
  for (size_t o = 0; o < (f.glu ? 1 : f.outs.size()); ++o) {
    const int64_t rows = f.outs[o].w.rows;
    total_rows += rows;
    for (int64_t r = 0; r < rows; r += p.nr)
      p.units.push_back({int(o), r, int(std::min<int64_t>(p.nr, rows - r))});
  }
  const int64_t groups = int64_t(p.units.size());
  p.xqs = qfn ? detail::qx_row_bytes(cols) : 0;
  p.token_block = std::max<int64_t>(
      p.tile_tokens, kTokenBlockBytes / (std::max<int64_t>(cols, 1) * int64_t(sizeof(float))) /
                         p.tile_tokens * p.tile_tokens);
  // Threads form a grid: pr parts of the row groups times pm parts of the tokens;
  // tokens are split only when there are too few row groups to go round.
  const int64_t macs = total_rows * (f.glu ? 2 : 1) * cols * n;
  p.nth = macs < kMinParallelWork ? 1 : threads;
  p.pr = int(std::max<int64_t>(1, std::min<int64_t>(p.nth, groups)));
  p.token_tiles = (n + p.tile_tokens - 1) / p.tile_tokens;
  p.pm = int(std::max<int64_t>(1, std::min<int64_t>(p.nth / p.pr, p.token_tiles)));
  // Little to prepare (decode): the calling thread does it before the parallel region,
  // sparing the threads a barrier; else every thread prepares its rows, then they meet.
  p.prep = f.norm_w || qfn || lfn;
  p.prep_inline = p.prep && (p.nth == 1 || n * cols < kMinParallelWork);
}

void matmul_fused(const FusedMatmul& f, const float* x, int64_t row_from, int64_t m,
                  ThreadPool& pool) {
  TD_CHECK(row_from >= 0);
  const int64_t n = m - row_from;
  if (n <= 0) return;
  const detail::IsaKernels& k = detail::isa();
  // The spec's plan when it was made for this call's shape and switches (the graph's
  // case); else one for this call, in a buffer of the calling thread.
  const MatmulPlan* plan = &f.plan;
  if (plan->isa != &k || plan->n != n || plan->threads != pool.size() ||
      plan->int8 != detail::int8_activations() || plan->packed != detail::use_packed() ||
      plan->lanes != detail::lane_tiles() ||
      plan->kernel.size() != f.outs.size()) {
    thread_local MatmulPlan t_plan;
    plan_matmul(f, n, pool.size(), t_plan);
    plan = &t_plan;
  }
  const MatmulPlan& p = *plan;
  if (p.units.empty()) return;
  const Weight& w0 = f.outs[0].w;
  const int64_t cols = w0.cols;
  const auto fn = reinterpret_cast<detail::TileFn>(p.plain);
  const auto qfn = reinterpret_cast<detail::QTileFn>(p.int8_tile);
  const auto pfn = reinterpret_cast<detail::PackedQTileFn>(p.packed_tile);
  const auto qx = reinterpret_cast<detail::QuantizeXFn>(p.quantize_x);
  const auto lfn = reinterpret_cast<detail::LanesTileFn>(p.lanes_tile);
  const int64_t lt = p.lane_tokens;
  const std::vector<Unit>& units = p.units;
  const int64_t groups = int64_t(units.size());
  const int nr = p.nr, tile_tokens = p.tile_tokens, nth = p.nth, pr = p.pr, pm = p.pm;
  const int64_t xqs = p.xqs, token_block = p.token_block, token_tiles = p.token_tiles;

  // Activations as the tiles read them: normalized (f32) and/or quantized, in buffers
  // of the calling thread shared with the workers for this call.
  const float* xin = x;
  uint8_t* xq = nullptr;
  float* xn = nullptr;
  if (f.norm_w) {
    grow_scratch(t_xn, size_t(n * cols));
    xn = t_xn.data();
  }
  if (qfn) {
    grow_scratch(t_xq, size_t(n * xqs));
    xq = t_xq.data();
  }
  float* xl = nullptr;
  if (lfn) {
    grow_scratch(t_xl, size_t((n + lt - 1) / lt * lt * cols));
    xl = t_xl.data();
  }
  auto prepare = [&](int tid, int parts) {
    const auto [i0, i1] = split_range(n, tid, parts);
    for (int64_t i = i0; i < i1; ++i) {
      const float* src = xin + i * cols;
      if (xn) {
        detail::rmsnorm_row(src, f.norm_w, xn + i * cols, cols, f.eps);
        src = xn + i * cols;
      }
      if (xq) qx(src, cols, xq + i * xqs);
      if (xl) {
        float* g = xl + i / lt * lt * cols + i % lt;
        for (int64_t c = 0; c < cols; ++c) g[c * lt] = src[c];
      }
    }
    // The lanes past the last token of the last group: zeros.
    if (xl && i0 < i1 && i1 == n && n % lt != 0) {
      float* g = xl + n / lt * lt * cols;
      for (int64_t c = 0; c < cols; ++c)
        std::fill(g + c * lt + n % lt, g + (c + 1) * lt, 0.0f);
    }
  };
  const float* xt = xn ? xn : xin;
  SpinBarrier barrier(nth);
  const bool prep = p.prep, prep_inline = p.prep_inline;
  if (prep_inline) prepare(0, 1);

  auto body = [&](int tid, int) {
    if (prep && !prep_inline) {
      if (nth > 1) {
        prepare(tid, nth);
        barrier.arrive_and_wait();
      } else {
        prepare(0, 1);
      }
    }
    if (tid >= pr * pm) return;
    const auto [g0, g1] = split_range(groups, tid % pr, pr);
    const auto [tt0, tt1] = split_range(token_tiles, tid / pr, pm);
    const int64_t t0 = tt0 * tile_tokens;
    const int64_t t1 = std::min(tt1 * tile_tokens, n);
    auto tile = [&](const MatmulOut& o, const Unit& u, int64_t t, int mt, float* y, int64_t ldy) {
      const auto* w = static_cast<const uint8_t*>(o.w.data) + size_t(u.r) * o.w.row_stride;
      const float* b = o.bias ? o.bias + u.r : nullptr;
      switch (p.kernel[size_t(&o - f.outs.data())]) {
        case Kernel::Bias:
          for (int tt = 0; tt < mt; ++tt)
            for (int c = 0; c < u.rows; ++c) y[tt * ldy + c] = b ? b[c] : 0.0f;
          break;
        case Kernel::Packed: {
          const auto ps = size_t(p.panel_bytes);
          pfn(static_cast<const uint8_t*>(o.w.packed) + size_t(u.r / detail::kPackRows) * ps, ps,
              u.rows, xq + t * xqs, xqs, mt, cols, y, ldy, b);
          break;
        }
        case Kernel::Int8:
          qfn(w, o.w.row_stride, u.rows, xq + t * xqs, xqs, mt, cols, y, ldy, b);
          break;
        case Kernel::Lanes:
          lfn(w, o.w.row_stride, u.rows, xl + t / lt * lt * cols, mt, cols, y, ldy, b);
          break;
        case Kernel::Plain:
          fn(w, o.w.row_stride, u.rows, xt + t * cols, cols, mt, cols, y, ldy, b);
          break;
      }
    };
    // Gate/up + SwiGLU: a run of units' gate rows, then the same units' up rows into a
    // buffer, then SwiGLU; each weight is read as one long stream per run (alternating
    // the two every tile would cost the prefetchers their stride).
    auto glu_block = [&](int64_t ga, int64_t gb, int64_t tb, int64_t te) {
      std::vector<float>& ub = t_up;
      for (int64_t c0 = ga; c0 < gb; c0 += kGluUnits) {
        const int64_t c1 = std::min(c0 + kGluUnits, gb);
        for (int64_t t = tb; t < te; t += tile_tokens) {
          const int mt = int(std::min<int64_t>(tile_tokens, te - t));
          const size_t need = size_t((c1 - c0) * nr * mt);
          if (ub.size() < need) ub.resize(need);
          for (int64_t g = c0; g < c1; ++g) {
            const Unit& u = units[size_t(g)];
            tile(f.outs[0], u, t, mt, f.outs[0].y + t * f.outs[0].w.rows + u.r, f.outs[0].w.rows);
          }
          for (int64_t g = c0; g < c1; ++g)
            tile(f.outs[1], units[size_t(g)], t, mt, ub.data() + (g - c0) * nr * mt, nr);
          for (int64_t g = c0; g < c1; ++g) {
            const Unit& u = units[size_t(g)];
            epilogue(f, f.outs[0], f.outs[0].y + t * f.outs[0].w.rows + u.r, f.outs[0].w.rows,
                     u.r, u.rows, row_from + t, mt, ub.data() + (g - c0) * nr * mt, nr);
          }
        }
      }
    };
    for (int64_t tb = t0; tb < t1; tb += token_block) {
      const int64_t te = std::min(tb + token_block, t1);
      if (f.glu) {
        glu_block(g0, g1, tb, te);
        continue;
      }
      for (int64_t g = g0; g < g1; ++g) {
        const Unit& u = units[size_t(g)];
        const MatmulOut& o = f.outs[size_t(u.out)];
        for (int64_t t = tb; t < te; t += tile_tokens) {
          const int mt = int(std::min<int64_t>(tile_tokens, te - t));
          float* y = o.y + t * o.w.rows + u.r;
          tile(o, u, t, mt, y, o.w.rows);
          if (o.rope_d > 0) epilogue(f, o, y, o.w.rows, u.r, u.rows, row_from + t, mt, nullptr, 0);
        }
      }
    }
  };
  if (nth == 1)
    body(0, 1);
  else
    pool.run(std::cref(body));  // by reference: no std::function allocation
}

}  // namespace tandem::kernels
