#include "tandem/train/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace tandem::train {

float Schedule::at(int64_t step) const {
  if (warmup > 0 && step <= warmup) return lr * float(step) / float(warmup);
  const int64_t span = std::max<int64_t>(1, total - warmup);
  const double f = std::clamp(double(step - warmup) / double(span), 0.0, 1.0);
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * f));
  return float(lr * (min_ratio + (1.0 - min_ratio) * cosine));
}

void Optimizer::step(ParamSet& p, const ParamSet& g, float lr, float grad_scale,
                     const kernels::AdamW& h, kernels::ThreadPool& pool) {
  ++t_;
  for (const SynthTensor& t : p.tensors()) {
    kernels::AdamW ht = h;
    ht.lr = lr;
    if (!t.matrix) ht.weight_decay = 0.0f;
    kernels::adamw_step(p.find(t.name), g.find(t.name), m.find(t.name), v.find(t.name),
                        t.rows * t.cols, ht, t_, grad_scale, pool);
  }
}

double grad_norm(const ParamSet& g, kernels::ThreadPool& pool) {
  return std::sqrt(kernels::sum_squares(g.data(), g.size(), pool));
}

float clip_factor(double norm, float clip) {
  if (clip <= 0.0f || !(norm > clip)) return 1.0f;
  return float(clip / norm);
}

}  // namespace tandem::train
