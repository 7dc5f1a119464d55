#pragma once
// AdamW over a ParamSet (moments in f32, the same layout), the learning-rate schedule
// (linear warmup, then cosine decay to a floor) and gradient clipping by global norm.
#include <cstdint>

#include "tandem/kernels/backward.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/train/params.hpp"

namespace tandem::train {

// lr(step), step counting from 1: lr * step / warmup during the warmup, then a cosine from
// lr down to lr * min_ratio at step `total` (held there after).
struct Schedule {
  float lr = 1e-3f;
  int64_t warmup = 0;
  int64_t total = 1;
  float min_ratio = 0.1f;
  float at(int64_t step) const;
};

class Optimizer {
 public:
  explicit Optimizer(const SynthSpec& spec) : m(spec), v(spec) {}

  // One AdamW step with the gradient g * grad_scale at learning rate lr; weight decay
  // applies to matrices only (not to norm weights). Advances steps().
  void step(ParamSet& p, const ParamSet& g, float lr, float grad_scale,
            const kernels::AdamW& h, kernels::ThreadPool& pool);
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }

  ParamSet m, v;  // first and second moments

 private:
  int64_t t_ = 0;
};

// The global L2 norm of a gradient.
double grad_norm(const ParamSet& g, kernels::ThreadPool& pool);
// The factor that clips a gradient of norm `norm` to at most `clip` (1 when clip <= 0).
float clip_factor(double norm, float clip);

}  // namespace tandem::train
