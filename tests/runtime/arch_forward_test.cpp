// Every architecture's forward pass against the plain float64 reference of
// support/reference_forward.hpp (which reads the file on its own): prompt logits under
// each engine option set, and KV-cached decode against recomputing the whole sequence.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "support/reference_forward.hpp"
#include "support/test_model.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/weight_layout.hpp"

using namespace tandem;

namespace {

struct Case {
  std::string name;  // test label
  SynthSpec spec;
};

// Small F32 models of each architecture; norms and matrices randomized enough that a
// misplaced norm, a wrong rotary pair or a wrong mask moves the logits well past the
// tolerance.
SynthSpec base_spec(const std::string& arch, uint64_t seed) {
  SynthSpec s = test::tiny_arch_spec(arch, 48, 64, seed);
  s.random_norms = true;
  s.weight_scale = 8.0f;
  return s;
}

std::vector<Case> cases() {
  std::vector<Case> c;
  c.push_back({"llama", base_spec("llama", 11)});
  Case l3{"llama-rope-llama3", base_spec("llama", 12)};
  l3.spec.rope_scaling = "llama3";
  l3.spec.rope_freq_base = 500000.0f;
  c.push_back(l3);
  Case lin{"llama-rope-linear", base_spec("llama", 13)};
  lin.spec.rope_scaling = "linear:4";
  c.push_back(lin);
  c.push_back({"mistral", base_spec("mistral", 14)});
  Case q2{"qwen2", base_spec("qwen2", 15)};
  q2.spec.qkv_bias = true;
  c.push_back(q2);
  Case q3{"qwen3", base_spec("qwen3", 16)};
  q3.spec.head_dim = 12;  // d differs from D/H = 8
  c.push_back(q3);
  c.push_back({"phi3", base_spec("phi3", 17)});
  // Windows of 5 keys over 20 tokens: the local layers see a fraction of the prefix.
  Case g2{"gemma2", base_spec("gemma2", 18)};
  g2.spec.n_layer = 3;  // local, global, local
  g2.spec.sliding_window = 5;
  c.push_back(g2);
  Case g3{"gemma3", base_spec("gemma3", 19)};
  g3.spec.n_layer = 7;  // 5 local, global, local
  g3.spec.sliding_window = 5;
  g3.spec.head_dim = 12;
  g3.spec.rope_freq_base = 1000000.0f;  // the global layers'; local ones use 10000
  g3.spec.rope_scaling = "linear:4";     // global layers only
  c.push_back(g3);
  return c;
}

std::vector<int32_t> prompt(int64_t n, int64_t V, uint32_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + seed * 11 + 5) % uint64_t(V));
  return ids;
}

// Max over rows of max |a - b| / max |b| of the row.
double rel_diff(const float* a, const double* b, int64_t rows, int64_t cols) {
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double diff = 0, scale = 1e-30;
    for (int64_t c = 0; c < cols; ++c) {
      diff = std::max(diff, std::fabs(double(a[r * cols + c]) - b[r * cols + c]));
      scale = std::max(scale, std::fabs(b[r * cols + c]));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

std::vector<float> prefill(const Model& m, const std::vector<int32_t>& ids,
                           const EngineOptions& opt, int threads) {
  kernels::ThreadPool pool(threads);
  Engine e(m, pool);
  e.set_options(opt);
  KVCache cache = e.make_cache(int64_t(ids.size()));
  std::vector<int32_t> pos(ids.size());
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<float> logits(ids.size() * size_t(m.hparams().n_vocab));
  e.forward(cache, ids, pos, int64_t(ids.size()), logits.data());
  return logits;
}

constexpr int64_t kTokens = 20;
constexpr double kTol = 1e-4;  // of the row's largest |logit|

TEST(ArchForward, PromptLogitsMatchFloat64Reference) {
  for (const Case& c : cases()) {
    const std::string path = test::write_test_model("arch-" + c.name, c.spec);
    const test::ReferenceForward ref(path);
    const auto ids = prompt(kTokens, ref.n_vocab(), uint32_t(c.spec.seed));
    const std::vector<double> want = ref.logits(ids);
    const auto m = load_model(path);
    EngineOptions all_off;
    all_off.flash_attention = all_off.memory_plan = all_off.fusion = all_off.graph_reuse = false;
    EngineOptions reference;
    reference.reference_kernels = true;
    EngineOptions paged;
    paged.kv.page_tokens = 8;
    const std::pair<const char*, EngineOptions> options[] = {
        {"default", {}}, {"all off", all_off}, {"reference kernels", reference}, {"paged", paged}};
    for (const auto& [label, opt] : options)
      for (int threads : {1, 2}) {
        const auto got = prefill(*m, ids, opt, threads);
        EXPECT_LE(rel_diff(got.data(), want.data(), kTokens, ref.n_vocab()), kTol)
            << c.name << " " << label << " threads " << threads;
      }
  }
}

TEST(ArchForward, CachedDecodeMatchesRecompute) {
  for (const Case& c : cases()) {
    const std::string path = test::write_test_model("arch-dec-" + c.name, c.spec);
    const auto m = load_model(path);
    const int64_t V = m->hparams().n_vocab;
    const auto ids = prompt(kTokens, V, uint32_t(c.spec.seed));
    const auto full = prefill(*m, ids, {}, 2);  // every position recomputed at once
    kernels::ThreadPool pool(2);
    Engine e(*m, pool);
    KVCache cache = e.make_cache(kTokens);
    constexpr int64_t kPrefix = 6;
    std::vector<int32_t> pos(kTokens);
    std::iota(pos.begin(), pos.end(), 0);
    std::vector<float> row(static_cast<size_t>(V));
    e.forward(cache, std::span(ids).first(kPrefix), std::span(pos).first(kPrefix), 1, row.data());
    for (int64_t i = kPrefix; i < kTokens; ++i) {
      e.forward(cache, std::span(ids).subspan(size_t(i), 1), std::span(pos).subspan(size_t(i), 1),
                1, row.data());
      const std::vector<double> want(full.begin() + i * V, full.begin() + (i + 1) * V);
      EXPECT_LE(rel_diff(row.data(), want.data(), 1, V), kTol) << c.name << " position " << i;
    }
  }
}

}  // namespace
