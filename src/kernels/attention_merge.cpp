#include "tandem/kernels/attention_merge.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tandem::kernels {

void attention_merge(float* out, float* lse, const float* part_out, const float* part_lse,
                     int64_t n, int H, int d) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n * H; ++i) {
    const float lb = part_lse[i];
    if (lb == neg_inf) continue;
    float* o = out + i * d;
    const float* p = part_out + i * d;
    const float la = lse[i];
    if (la == neg_inf) {
      for (int j = 0; j < d; ++j) o[j] = p[j];
      lse[i] = lb;
      continue;
    }
    const float mx = std::max(la, lb);
    const float wa = std::exp(la - mx), wb = std::exp(lb - mx);
    const float inv = 1.0f / (wa + wb);
    const float ca = wa * inv, cb = wb * inv;
    for (int j = 0; j < d; ++j) o[j] = o[j] * ca + p[j] * cb;
    lse[i] = mx + std::log(wa + wb);
  }
}

}  // namespace tandem::kernels
