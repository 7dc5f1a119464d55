// Models whose matrices are K-quants (Q2_K..Q6_K), end to end: written by the synthetic
// model writer, loaded through the traits table, and run by the optimized engine
// (prefill in chunks, then decode steps) with the logits of the plain scalar reference
// engine on the same file.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "support/test_model.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/model/synth.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/weight_layout.hpp"

using namespace tandem;

namespace {

// Logits of the last 2 rows of a 21-token prompt (chunks of 8), then of 3 decode steps.
std::vector<float> logits(const Model& m, bool reference) {
  kernels::ThreadPool pool(2);
  Engine e(m, pool, 8);
  EngineOptions o;
  o.reference_kernels = reference;
  e.set_options(o);
  const int64_t V = m.hparams().n_vocab;
  std::vector<int32_t> ids(21), pos(21);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 29 + 3) % size_t(V));
  std::iota(pos.begin(), pos.end(), 0);
  KVCache cache = e.make_cache(32);
  std::vector<float> out(size_t(2 * V));
  e.forward(cache, ids, pos, 2, out.data());
  for (int32_t s = 0; s < 3; ++s) {
    const int32_t id = (s * 13 + 1) % int32_t(V), p = 21 + s;
    std::vector<float> l(static_cast<size_t>(V));
    e.forward(cache, {&id, 1}, {&p, 1}, 1, l.data());
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

TEST(KQuantModel, OptimizedEngineMatchesReference) {
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    // D and F multiples of 256 (one and two super-blocks per row); V 260 rows.
    const std::string path = test::write_test_model(
        "kquant_" + std::string(dtype_name(t)),
        {.n_embd = 256, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .n_ff = 512, .n_ctx = 64,
         .type = t, .seed = 5, .n_vocab = 260});
    const auto m = load_model(path);
    ASSERT_EQ(m->layers[0].w_down.type, t);
    ASSERT_EQ(m->output.type, t);
    const std::vector<float> got = logits(*m, false), want = logits(*m, true);
    ASSERT_EQ(got.size(), want.size());
    double amax = 0, d = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << i;
      amax = std::max(amax, std::fabs(double(want[i])));
      d = std::max(d, std::fabs(double(got[i]) - double(want[i])));
    }
    // The optimized matmul may quantize activations to 8 bits (the reference keeps
    // them f32): the bound of the Q8_0/Q4_0 engine comparisons.
    EXPECT_LT(d / amax, 3e-2);
    EXPECT_GT(amax, 0.0);
  }
}

}  // namespace
