#include "tandem/runtime/sampler.hpp"

#include <algorithm>
#include <cmath>

#include "tandem/core/error.hpp"

namespace tandem {

int32_t argmax(std::span<const float> logits) {
  TD_CHECK(!logits.empty());
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return int32_t(best);
}

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {}

int32_t Sampler::sample(std::span<const float> logits) {
  if (p_.temperature <= 0.0f) return argmax(logits);
  const size_t n = logits.size();
  TD_CHECK(n > 0);
  // Candidates sorted by logit, cut to top-k.
  const size_t k = p_.top_k > 0 ? std::min(n, size_t(p_.top_k)) : n;
  cand_.resize(n);
  for (size_t i = 0; i < n; ++i) cand_[i] = {logits[i], int32_t(i)};
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::partial_sort(cand_.begin(), cand_.begin() + ptrdiff_t(k), cand_.end(), by_logit);
  cand_.resize(k);
  // Softmax with temperature.
  const float mx = cand_[0].first;
  double sum = 0.0;
  for (auto& c : cand_) {
    c.first = std::exp((c.first - mx) / p_.temperature);
    sum += c.first;
  }
  // Nucleus: the smallest prefix whose probability reaches top_p.
  size_t keep = k;
  if (p_.top_p < 1.0f) {
    double acc = 0.0;
    for (size_t i = 0; i < k; ++i) {
      acc += cand_[i].first / sum;
      if (acc >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) total += cand_[i].first;
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_);
  for (size_t i = 0; i < keep; ++i) {
    r -= cand_[i].first;
    if (r < 0.0) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace tandem
