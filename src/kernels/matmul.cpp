#include <algorithm>
#include <functional>

#include "kernels/isa.hpp"
#include "tandem/core/error.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::kernels {
namespace {

// Below this many multiply-adds the op runs on the calling thread alone.
constexpr int64_t kMinParallelWork = int64_t(1) << 15;
// Tokens whose x rows are kept hot (L2) while a thread sweeps its weight rows.
constexpr int64_t kTokenBlockBytes = int64_t(256) << 10;

}  // namespace

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
          fn(wdata + size_t(r) * w.row_stride, w.row_stride, rows, x + t * w.cols, w.cols, mt,
             w.cols, y + t * w.rows + r, w.rows, bias ? bias + r : nullptr);
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
