#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/core/error.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::kernels {
namespace {

// Below this many multiply-adds the op runs on the calling thread alone.
constexpr int64_t kMinParallelWork = int64_t(1) << 15;
// Tokens whose x rows are kept hot (L2) while a thread sweeps its weight rows.
constexpr int64_t kTokenBlockBytes = int64_t(256) << 10;

thread_local std::vector<uint8_t> t_xq;  // quantized activations (caller thread)

// One block of 32: q = nearest integer to x / d with d = max|x| / 127; returns d.
float quant_block(const float* x, int8_t* q) {
  float amax = 0.0f;
  for (int j = 0; j < kQBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQBlock; ++j) q[j] = int8_t(std::nearbyint(x[j] * id));
  return d;
}

}  // namespace

namespace detail {

void quantize_x(int layout, DType t, const float* x, int64_t cols, uint8_t* out) {
  const int64_t nb = cols / kQBlock;
  if (layout == kQxPlain) {
    auto* ds = reinterpret_cast<float*>(out + cols);
    for (int64_t b = 0; b < nb; ++b)
      ds[b] = quant_block(x + b * kQBlock, reinterpret_cast<int8_t*>(out) + b * kQBlock);
    return;
  }
  const bool q4 = t == DType::Q4_0;
  const int32_t k = q4 ? 8 : 128;
  auto* pairs = reinterpret_cast<QxPair*>(out);
  for (int64_t b = 0; b < nb; b += 2) {
    int8_t q[2][kQBlock] = {};
    float d[2] = {0.0f, 0.0f};
    for (int h = 0; h < 2 && b + h < nb; ++h) d[h] = quant_block(x + (b + h) * kQBlock, q[h]);
    QxPair& p = pairs[b / 2];
    if (q4) {  // b[0..15], b+1[0..15], b[16..31], b+1[16..31]
      for (int part = 0; part < 4; ++part)
        std::memcpy(p.q + 16 * part, q[part & 1] + 16 * (part >> 1), 16);
    } else {
      std::memcpy(p.q, q[0], kQBlock);
      std::memcpy(p.q + kQBlock, q[1], kQBlock);
    }
    for (int l = 0; l < 16; ++l) {
      p.d[l] = d[q4 ? (l / 4) & 1 : l / 8];
      p.corr[l] = -k * (int32_t(p.q[4 * l]) + p.q[4 * l + 1] + p.q[4 * l + 2] + p.q[4 * l + 3]);
    }
  }
}

}  // namespace detail

void matmul(const Weight& w, const float* x, int64_t m, float* y, ThreadPool& pool,
            const float* bias) {
  TD_CHECK(w.rows >= 0 && w.cols >= 0 && m >= 0);
  TD_CHECK(w.cols % info(w.type).block_size == 0);
  if (m == 0 || w.rows == 0) return;
  if (w.cols == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t r = 0; r < w.rows; ++r) y[i * w.rows + r] = bias ? bias[r] : 0.0f;
    return;
  }
  const detail::IsaKernels& k = detail::isa();
  const detail::TileFn fn = detail::tile_fn(k, w.type);
  // Q8_0/Q4_0 weights: activations quantized to 8 bits once, then integer products.
  detail::QTileFn qfn = nullptr;
  if (detail::int8_activations()) {
    if (w.type == DType::Q8_0) qfn = k.q8_0_int;
    if (w.type == DType::Q4_0) qfn = k.q4_0_int;
  }
  const int64_t xqs = qfn ? detail::qx_row_bytes(w.cols) : 0;
  const auto* wdata = static_cast<const uint8_t*>(w.data);
  const int nr = k.tile_rows;
  const int64_t groups = (w.rows + nr - 1) / nr;
  const int64_t token_block =
      std::max<int64_t>(detail::kTileTokens,
                        kTokenBlockBytes / (w.cols * int64_t(sizeof(float))) /
                            detail::kTileTokens * detail::kTileTokens);

  // Threads form a grid: pr parts of the row groups times pm parts of the tokens;
  // tokens are split only when there are too few row groups to go round.
  const bool small = w.rows * w.cols * m < kMinParallelWork;
  const int nth = small ? 1 : pool.size();
  const int pr = int(std::min<int64_t>(nth, groups));
  const int64_t token_tiles = (m + detail::kTileTokens - 1) / detail::kTileTokens;
  const int pm = int(std::min<int64_t>(nth / pr, token_tiles));

  const uint8_t* xq = nullptr;
  if (qfn) {
    t_xq.resize(size_t(m * xqs));
    uint8_t* buf = t_xq.data();
    xq = buf;
    auto quant = [&](int tid, int n) {
      const auto [i0, i1] = split_range(m, tid, n);
      for (int64_t i = i0; i < i1; ++i)
        detail::quantize_x(k.qx_layout, w.type, x + i * w.cols, w.cols, buf + i * xqs);
    };
    if (nth == 1 || m == 1)
      quant(0, 1);
    else
      pool.run(std::cref(quant));
  }

  auto body = [&](int tid, int) {
    if (tid >= pr * pm) return;
    const auto [g0, g1] = split_range(groups, tid % pr, pr);
    const auto [tt0, tt1] = split_range(token_tiles, tid / pr, pm);
    const int64_t t0 = tt0 * detail::kTileTokens;
    const int64_t t1 = std::min(tt1 * detail::kTileTokens, m);
    for (int64_t tb = t0; tb < t1; tb += token_block) {
      const int64_t te = std::min(tb + token_block, t1);
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t r = g * nr;
        const int rows = int(std::min<int64_t>(nr, w.rows - r));
        for (int64_t t = tb; t < te; t += detail::kTileTokens) {
          const int mt = int(std::min<int64_t>(detail::kTileTokens, te - t));
          if (qfn)
            qfn(wdata + size_t(r) * w.row_stride, w.row_stride, rows, xq + t * xqs, xqs, mt,
                w.cols, y + t * w.rows + r, w.rows, bias ? bias + r : nullptr);
          else
            fn(wdata + size_t(r) * w.row_stride, w.row_stride, rows, x + t * w.cols, w.cols,
               mt, w.cols, y + t * w.rows + r, w.rows, bias ? bias + r : nullptr);
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
