// KV-cached decoding must give the logits of recomputing the whole sequence.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "support/test_model.hpp"
#include "support/test_paths.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/synth.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/generate.hpp"
#include "tandem/runtime/sampler.hpp"

using namespace tandem;

namespace {

std::string make_model(const std::string& name, int64_t H, int64_t G, DType type) {
  return test::write_test_model(name, {.n_embd = 16 * H, .n_layer = 2, .n_head = H, .n_head_kv = G,
                                       .n_ff = 96, .n_ctx = 4096, .type = type, .seed = 7,
                                       .n_vocab = 300});
}

std::vector<float> last_logits_recomputed(const Model& m, kernels::ThreadPool& pool,
                                          const std::vector<int32_t>& ids) {
  Engine e(m, pool);
  KVCache cache = e.make_cache(int64_t(ids.size()));
  std::vector<int32_t> pos(ids.size());
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<float> logits(static_cast<size_t>(m.hparams().n_vocab));
  e.forward(cache, ids, pos, 1, logits.data());
  return logits;
}

void check_cached_equals_recompute(const std::string& path) {
  const auto m = load_model(path);
  const int64_t V = m->hparams().n_vocab;
  kernels::ThreadPool pool(2);
  Engine e(*m, pool);
  constexpr int kSteps = 64;
  std::vector<int32_t> ids = {1, 17, 42, 5, 99, 250, 3};
  KVCache cache = e.make_cache(int64_t(ids.size()) + kSteps);
  std::vector<int32_t> pos(ids.size());
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<float> logits(static_cast<size_t>(V));
  e.forward(cache, ids, pos, 1, logits.data());
  Sampler sampler({/*temperature*/ 1.0f, /*top_k*/ 0, /*top_p*/ 1.0f, /*seed*/ 3});
  double worst = 0;
  for (int step = 0; step < kSteps; ++step) {
    const auto full = last_logits_recomputed(*m, pool, ids);
    double diff = 0;
    for (int64_t i = 0; i < V; ++i) diff = std::max(diff, double(std::fabs(full[size_t(i)] - logits[size_t(i)])));
    ASSERT_LE(diff, 1e-4) << path << " step " << step;
    worst = std::max(worst, diff);
    // Sampled (not greedy) so the sequence does not settle into a repeat.
    const int32_t next = sampler.sample(logits);
    const int32_t p = int32_t(ids.size());
    ids.push_back(next);
    e.forward(cache, std::span<const int32_t>(&next, 1), std::span<const int32_t>(&p, 1), 1,
              logits.data());
  }
  std::printf("%s: worst cached-vs-recomputed diff over %d steps: %.3g\n", path.c_str(), kSteps, worst);
}

}  // namespace

TEST(KVCacheDecode, EqualsRecomputeWithFullKVHeads) {
  check_cached_equals_recompute(make_model("g_eq_h", 4, 4, DType::F32));
}

TEST(KVCacheDecode, EqualsRecomputeWithGroupedKVHeads) {
  check_cached_equals_recompute(make_model("g_lt_h", 8, 2, DType::F32));
}

TEST(KVCacheDecode, EqualsRecomputeQuantized) {
  check_cached_equals_recompute(make_model("q8", 4, 2, DType::Q8_0));
}

TEST(Engine, ChunkedPrefillEqualsOneChunk) {
  const auto m = load_model(make_model("chunk", 6, 3, DType::F16));
  const int64_t V = m->hparams().n_vocab;
  kernels::ThreadPool pool(2);
  std::mt19937 rng(5);
  std::vector<int32_t> ids(77);
  for (auto& id : ids) id = int32_t(rng() % uint32_t(V));
  std::vector<int32_t> pos(ids.size());
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<float> a(ids.size() * size_t(V)), b(ids.size() * size_t(V));
  Engine one(*m, pool, 1024), chunked(*m, pool, 16);
  KVCache c1 = one.make_cache(77), c2 = chunked.make_cache(77);
  one.forward(c1, ids, pos, 77, a.data());
  chunked.forward(c2, ids, pos, 77, b.data());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5) << i;
}

TEST(Engine, RejectsOutOfRangeTokenIds) {
  const auto m = load_model(make_model("range", 4, 4, DType::F32));
  kernels::ThreadPool pool(1);
  Engine e(*m, pool);
  KVCache c = e.make_cache(4);
  std::vector<int32_t> ids = {1, 300}, pos = {0, 1};
  std::vector<float> logits(300);
  EXPECT_THROW(e.forward(c, ids, pos, 1, logits.data()), Error);
}

TEST(Engine, FullCacheIsAResourceError) {
  const auto m = load_model(make_model("full", 4, 4, DType::F32));
  kernels::ThreadPool pool(1);
  Engine e(*m, pool);
  KVCache c = e.make_cache(2);
  std::vector<int32_t> ids = {1, 2, 3}, pos = {0, 1, 2};
  try {
    e.forward(c, ids, pos, 0, nullptr);
    FAIL() << "no error";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::Resource);
  }
}

TEST(Generate, WithoutKVCacheRecomputesToTheSameTokens) {
  const auto m = load_model(make_model("nokv", 8, 2, DType::F32));
  kernels::ThreadPool pool(2);
  std::vector<int32_t> prompt = {3, 14, 15, 92, 65};
  std::vector<int32_t> with, without;
  for (bool kv : {true, false}) {
    Engine e(*m, pool);
    KVCache cache = e.make_cache(int64_t(prompt.size()) + 24);
    GenerateParams gp;
    gp.n_predict = 24;
    gp.sampler = {0.9f, 0, 1.0f, 77};
    gp.kv_cache = kv;
    generate(e, cache, prompt, gp, {}, kv ? &with : &without);
  }
  EXPECT_EQ(with.size(), 24u);
  EXPECT_EQ(with, without);
}
