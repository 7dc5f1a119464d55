#pragma once
// Token sampling: greedy, or temperature with top-k and top-p (nucleus) filtering,
// from a seeded generator so runs are reproducible.
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace tandem {

struct SamplerParams {
  float temperature = 0.8f;  // <= 0: greedy (argmax)
  int top_k = 40;            // <= 0: no top-k filter
  float top_p = 0.95f;       // >= 1: no top-p filter
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  // Picks a token id from one row of logits.
  int32_t sample(std::span<const float> logits);
  const SamplerParams& params() const { return p_; }

 private:
  SamplerParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

// Index of the largest logit (lowest index on ties).
int32_t argmax(std::span<const float> logits);

}  // namespace tandem
