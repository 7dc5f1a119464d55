// LocalAttention with flash attention off (the materialized-score kernel) gives the
// same output as with it on, over a prefill and then decode steps against the cache.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "tandem/kernels/thread_pool.hpp"
#include "tandem/memory/kv_cache.hpp"
#include "tandem/parallel/sequence_attention.hpp"

using namespace tandem;
using namespace tandem::parallel;

namespace {

std::vector<float> random_vec(std::mt19937& rng, size_t n) {
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Runs a prefill of n0 tokens then `decode` single-token steps through one
// LocalAttention; returns every step's output, concatenated.
std::vector<float> run(const AttnShape& shape, bool flash, bool reference, int threads,
                       int64_t n0, int decode) {
  kernels::ThreadPool pool(threads);
  LocalAttention att(shape, pool);
  att.set_kernel(reference ? AttnKernel::Reference : flash ? AttnKernel::Flash : AttnKernel::Materialized);
  const int64_t layers = 2;
  KVCache cache(layers, n0 + decode, shape.kv_dim());
  std::mt19937 rng(42);
  std::vector<float> all;
  int32_t next_pos = 0;
  for (int step = 0; step <= decode; ++step) {
    const int64_t m = step == 0 ? n0 : 1;
    std::vector<int32_t> pos(static_cast<size_t>(m));
    for (auto& p : pos) p = next_pos++;
    const int64_t slot = att.begin_step(cache, m, pos.data());
    for (int64_t layer = 0; layer < layers; ++layer) {
      const std::vector<float> q = random_vec(rng, size_t(m * shape.q_dim()));
      const std::vector<float> k = random_vec(rng, size_t(m * shape.kv_dim()));
      const std::vector<float> v = random_vec(rng, size_t(m * shape.kv_dim()));
      std::vector<float> out(size_t(m * shape.q_dim()), 99.0f);
      AttnStep s;
      s.layer = layer;
      s.m = m;
      s.q = q.data();
      s.k = k.data();
      s.v = v.data();
      s.pos = pos.data();
      s.out = out.data();
      att.attend(cache, slot, s);
      all.insert(all.end(), out.begin(), out.end());
    }
  }
  return all;
}

TEST(LocalAttentionFlash, OffMatchesOn) {
  for (auto [H, G, d] : std::vector<std::tuple<int, int, int>>{{6, 6, 48}, {8, 2, 64}}) {
    AttnShape shape{H, G, d, 1.0f / std::sqrt(float(d))};
    for (int threads : {1, 3}) {
      const std::vector<float> on = run(shape, true, false, threads, 77, 5);
      const std::vector<float> off = run(shape, false, false, threads, 77, 5);
      const std::vector<float> ref = run(shape, false, true, threads, 77, 5);
      ASSERT_EQ(on.size(), off.size());
      for (size_t i = 0; i < on.size(); ++i) {
        ASSERT_NEAR(off[i], on[i], 1e-5) << "H" << H << " threads " << threads << " at " << i;
        ASSERT_NEAR(off[i], ref[i], 1e-5) << "H" << H << " threads " << threads << " at " << i;
      }
    }
  }
}

}  // namespace
