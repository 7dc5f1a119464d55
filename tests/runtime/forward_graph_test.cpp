// The model's forward graph run by the executor directly: fused vs unfused within 1e-5,
// and poisoned execution (every buffer filled with NaN once dead) equal to the plain run,
// which proves no live buffer shares bytes with another under the memory plan.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "support/test_model.hpp"
#include "support/test_paths.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/graph/executor.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/model/synth.hpp"
#include "tandem/runtime/forward_graph.hpp"

using namespace tandem;

namespace {

std::unique_ptr<Model> model(DType type, bool bias) {
  return load_model(test::write_test_model(
      "graph_" + std::string(dtype_name(type)),
      {.n_embd = 96, .n_layer = 2, .n_head = 6, .n_head_kv = 3, .n_ff = 224, .n_ctx = 512,
       .type = type, .seed = 5, .n_vocab = 150, .qkv_bias = bias}));
}

// Logits rows [out_from, m) of one prefill step of m tokens at positions 0..m-1.
std::vector<float> run(const Model& m, int64_t steps, int64_t out_from, bool passes,
                       graph::ExecOptions eo, kernels::ThreadPool& pool) {
  const auto& hp = m.hparams();
  graph::Graph g = build_forward_graph(m, steps, out_from);
  if (passes) {
    graph::PassStats s;
    graph::eliminate_dead(g, s);
    graph::fuse(g, s);
  }
  graph::Executor ex(std::move(g), eo);
  std::vector<int32_t> ids(static_cast<size_t>(steps)), pos(static_cast<size_t>(steps));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 13 + 1) % 150);
  std::iota(pos.begin(), pos.end(), 0);
  // Self-attention of the step's own tokens (no cache).
  auto attend = [&](int, const float* q, const float* k, const float* v, float* out) {
    kernels::AttentionArgs a;
    a.q = q;
    a.q_pos = pos.data();
    a.n_q = steps;
    a.k = k;
    a.v = v;
    a.kv_pos = pos.data();
    a.n_kv = steps;
    a.kv_stride = hp.kv_dim();
    a.H = int(hp.n_head);
    a.G = int(hp.n_head_kv);
    a.d = int(hp.head_dim);
    a.scale = 1.0f / std::sqrt(float(hp.head_dim));
    a.out = out;
    kernels::attention(a, pool);
  };
  std::vector<float> logits(static_cast<size_t>((steps - out_from) * hp.n_vocab));
  float* outs[1] = {logits.data()};
  ex.run(ids.data(), pos.data(), std::span<float* const>(outs, out_from < steps ? 1 : 0), attend,
         pool);
  return logits;
}

TEST(ForwardGraph, FusedEqualsUnfusedAndPoisonFindsNoAliasing) {
  kernels::ThreadPool pool(2);
  for (DType type : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
    SCOPED_TRACE(dtype_name(type));
    const auto m = model(type, type == DType::F16);
    for (int64_t steps : {1, 9, 40}) {
      for (int64_t out_from : {int64_t(0), steps - 1}) {
        const auto unfused = run(*m, steps, out_from, false, {}, pool);
        const auto fused = run(*m, steps, out_from, true, {}, pool);
        double amax = 0, d = 0;
        for (size_t i = 0; i < fused.size(); ++i) {
          amax = std::max(amax, std::fabs(double(unfused[i])));
          d = std::max(d, std::fabs(double(fused[i]) - double(unfused[i])));
        }
        EXPECT_LE(d / amax, 1e-5) << "steps " << steps << " out_from " << out_from;
        for (bool passes : {false, true}) {
          graph::ExecOptions poisoned;
          poisoned.poison_dead = true;
          const auto p = run(*m, steps, out_from, passes, poisoned, pool);
          EXPECT_EQ(p, passes ? fused : unfused) << "steps " << steps;
        }
      }
    }
  }
}

TEST(ForwardGraph, PoisonedUnplannedRunEqualsPlanned) {
  const auto m = model(DType::F32, false);
  kernels::ThreadPool pool(1);
  graph::ExecOptions eo;
  eo.poison_dead = true;
  const auto planned = run(*m, 4, 3, true, eo, pool);
  for (float x : planned) ASSERT_FALSE(std::isnan(x));
  eo.plan_memory = false;
  EXPECT_EQ(run(*m, 4, 3, true, eo, pool), planned);
}

}  // namespace
