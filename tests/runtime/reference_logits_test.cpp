// The forward pass against another engine's logits for the shipped tiny model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>

#include "support/test_paths.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/generate.hpp"

using namespace tandem;

namespace {

const std::vector<int32_t> kPrompt = {1,   9038, 2501, 263,  931,  29892, 727,  471,
                                      263, 2217, 7826, 4257, 365,  2354,  29889};

std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  in.seekg(0, std::ios::end);
  const auto n = size_t(in.tellg()) / sizeof(float);
  in.seekg(0);
  std::vector<float> v(n);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(float)));
  return v;
}

struct RefGen {
  std::vector<int32_t> ids;
  std::vector<double> margins;
};

// Parses the "gen <step> <id> <logit> <margin> '<piece>'" lines of a reference .txt.
RefGen read_ref_gen(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  RefGen g;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("gen ", 0) != 0) continue;
    std::istringstream ss(line.substr(4));
    int step;
    int32_t id;
    double logit, margin;
    ss >> step >> id >> logit >> margin;
    g.ids.push_back(id);
    g.margins.push_back(margin);
  }
  return g;
}

std::vector<float> prompt_logits(const Model& m, int threads, bool reference = false) {
  kernels::ThreadPool pool(threads);
  Engine e(m, pool);
  e.set_reference_kernels(reference);
  KVCache cache = e.make_cache(int64_t(kPrompt.size()));
  std::vector<int32_t> pos(kPrompt.size());
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<float> logits(kPrompt.size() * size_t(m.hparams().n_vocab));
  e.forward(cache, kPrompt, pos, int64_t(kPrompt.size()), logits.data());
  return logits;
}

std::vector<int32_t> top_k(const float* row, int64_t V, int k) {
  std::vector<int32_t> idx(static_cast<size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return row[a] > row[b]; });
  idx.resize(size_t(k));
  return idx;
}

}  // namespace

TEST(ReferenceLogits, TinyF16MatchesEveryPosition) {
  const auto m = load_model(test::shared_path("models/tiny-f16.gguf"));
  const int64_t V = m->hparams().n_vocab;
  const auto ref = read_f32(test::shared_path("models/reference/tiny-f16.ids15.kvf32.fa0.prompt_logits.f32"));
  ASSERT_EQ(ref.size(), kPrompt.size() * size_t(V));
  for (int threads : {1, 2}) {
    const auto got = prompt_logits(*m, threads);
    double max_diff = 0;
    for (size_t p = 0; p < kPrompt.size(); ++p) {
      const float* g = got.data() + p * size_t(V);
      const float* r = ref.data() + p * size_t(V);
      for (int64_t i = 0; i < V; ++i) max_diff = std::max(max_diff, double(std::fabs(g[i] - r[i])));
      EXPECT_EQ(top_k(g, V, 1)[0], top_k(r, V, 1)[0]) << "position " << p;
    }
    EXPECT_LE(max_diff, 2e-3) << "threads " << threads;
    std::printf("tiny-f16 threads=%d: max abs diff vs reference %.3g\n", threads, max_diff);
  }
}

TEST(ReferenceLogits, ScalarReferenceKernelsMatchToo) {
  // The naive pipeline (plain scalar kernels) computes the same model.
  const auto m = load_model(test::shared_path("models/tiny-f16.gguf"));
  const int64_t V = m->hparams().n_vocab;
  const auto ref = read_f32(test::shared_path("models/reference/tiny-f16.ids15.kvf32.fa0.prompt_logits.f32"));
  const auto got = prompt_logits(*m, 1, true);
  ASSERT_EQ(got.size(), ref.size());
  double max_diff = 0;
  for (size_t i = 0; i < got.size(); ++i) max_diff = std::max(max_diff, double(std::fabs(got[i] - ref[i])));
  EXPECT_LE(max_diff, 2e-3);
  for (size_t p = 0; p < kPrompt.size(); ++p)
    EXPECT_EQ(top_k(got.data() + p * size_t(V), V, 1)[0], top_k(ref.data() + p * size_t(V), V, 1)[0]);
}

TEST(ReferenceLogits, TinyF16GreedyGenerationMatches) {
  const auto m = load_model(test::shared_path("models/tiny-f16.gguf"));
  const auto ref = read_ref_gen(test::shared_path("models/reference/tiny-f16.ids15.kvf32.fa0.txt"));
  ASSERT_EQ(ref.ids.size(), 32u);
  kernels::ThreadPool pool(2);
  Engine e(*m, pool);
  KVCache cache = e.make_cache(int64_t(kPrompt.size()) + 32);
  GenerateParams gp;
  gp.n_predict = 32;
  gp.sampler.temperature = 0;
  gp.stop_at_eog = false;
  std::vector<int32_t> out;
  generate(e, cache, kPrompt, gp, {}, &out);
  ASSERT_EQ(out.size(), 32u);
  // Tokens must agree up to the first close call (margin <= 1e-3), after which the
  // continuation may legitimately differ.
  size_t compared = 0;
  for (size_t i = 0; i < 32; ++i) {
    if (ref.margins[i] <= 1e-3) break;
    EXPECT_EQ(out[i], ref.ids[i]) << "step " << i;
    ++compared;
  }
  std::printf("greedy: %zu of 32 steps compared (margin > 1e-3)\n", compared);
  EXPECT_GT(compared, 0u);
}

TEST(ReferenceLogits, TinyQ4_0AgreesLoosely) {
  // The reference rounds activations to 8 bits before Q4_0 dot products; we keep
  // them in f32, so only loose agreement is expected.
  const auto m = load_model(test::shared_path("models/tiny-q4_0-pure.gguf"));
  const int64_t V = m->hparams().n_vocab;
  const auto ref = read_f32(test::shared_path("models/reference/tiny-q4_0-pure.ids15.kvf32.fa0.prompt_logits.f32"));
  ASSERT_EQ(ref.size(), kPrompt.size() * size_t(V));
  const auto got = prompt_logits(*m, 2);
  double max_diff = 0;
  size_t overlap = 0, top1_same = 0;
  for (size_t p = 0; p < kPrompt.size(); ++p) {
    const float* g = got.data() + p * size_t(V);
    const float* r = ref.data() + p * size_t(V);
    for (int64_t i = 0; i < V; ++i) max_diff = std::max(max_diff, double(std::fabs(g[i] - r[i])));
    const auto tg = top_k(g, V, 5), tr = top_k(r, V, 5);
    const std::set<int32_t> sr(tr.begin(), tr.end());
    for (auto id : tg) overlap += sr.count(id);
    top1_same += tg[0] == tr[0];
  }
  std::printf("tiny-q4_0: max abs diff %.4f, top-5 overlap %zu/%zu, top-1 same %zu/%zu\n", max_diff,
              overlap, kPrompt.size() * 5, top1_same, kPrompt.size());
  EXPECT_LE(max_diff, 0.05);
  EXPECT_GE(overlap, kPrompt.size() * 5 * 7 / 10);
}
