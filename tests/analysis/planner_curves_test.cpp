// The planner on a profile with curves (what `tandem calibrate` writes): a device is a
// rank's threads, the prefill runs chunk by chunk as the runtime's, and every matrix
// product, attention call and op reads its rate from the curves.
#include <gtest/gtest.h>

#include "tandem/analysis/planner.hpp"
#include <nlohmann/json.hpp>

#include "tandem/core/error.hpp"

using namespace tandem::analysis;

namespace {

// A CPU node of 2 threads: products at 50 GFLOP/s per thread, attention at 20 per
// thread, 10 us per op, bandwidth too high to bind.
HardwareProfile flat_cpu() {
  HardwareProfile h = *builtin_profile("cpu-this");
  h.threads = 2;
  Curve mm = Curve::grid({"threads", "tokens", "elements"}, {{1, 2}, {1, 512}, {1e4, 1e7}});
  for (size_t t = 0; t < 2; ++t)
    for (size_t i = 0; i < 4; ++i) mm.values[t * 4 + i] = 50e9 * double(t + 1);
  h.curves.matmul["f32"] = mm;
  h.curves.attention = Curve::grid({"threads"}, {{1, 2}});
  h.curves.attention.values = {20e9, 40e9};
  h.curves.op_overhead = Curve::grid({"threads"}, {{1, 2}}, 10e-6);
  h.curves.bandwidth = Curve::grid({"threads", "bytes"}, {{1, 2}, {1, 1e12}}, 1e18);
  return h;
}

PlanRequest tiny_request(int64_t n, int gpus, int threads = 0) {
  PlanRequest r;
  r.model = *named_shape("tiny");
  r.hw = flat_cpu();
  r.tokens = n;
  r.gpus = gpus;
  r.gpus_per_node = gpus;
  r.dtype = "f32";
  r.decode_tokens = 1;
  r.threads = threads;
  return r;
}

}  // namespace

TEST(PlannerCurves, SinglePrefillAddsItsChunksCallsOnTheCurves) {
  const ModelShape m = *named_shape("tiny");
  const double L = double(m.n_layer), H = double(m.n_head), d = double(m.head_dim);
  const double Wl = double(m.layer_matmul_params()), V = double(m.n_vocab), D = double(m.n_embd);
  // N = 1024 in two chunks of kCpuPrefillChunk = 512; the second sees the first.
  const double c = double(kCpuPrefillChunk);
  auto expected = [&](double mm_rate, double attn_rate) {
    double t = 0;
    for (const double at : {0.0, c})
      t += L * (2 * c * Wl / mm_rate + 4 * d * H * (c * at + c * (c + 1) / 2) / attn_rate + 9 * 10e-6);
    return t + 2 * V * D / mm_rate + 3 * 10e-6;
  };
  const StrategyPlan two = plan_strategy(tiny_request(1024, 1), "single");  // the node's 2 threads
  EXPECT_NEAR(two.prefill_seconds, expected(100e9, 40e9), 1e-4 * two.prefill_seconds);
  const StrategyPlan one = plan_strategy(tiny_request(1024, 1, 1), "single");
  EXPECT_NEAR(one.prefill_seconds, expected(50e9, 20e9), 1e-4 * one.prefill_seconds);
  // Decode at depth 1024: every product at one token, attention over the cache.
  const double dec = L * (2 * Wl / 100e9 + 4 * d * H * 1024 / 40e9 + 9 * 10e-6) + 2 * V * D / 100e9 + 3 * 10e-6;
  EXPECT_NEAR(two.decode_seconds_per_token, dec, 1e-4 * dec);
}

TEST(PlannerCurves, RanksOfOneNodeShareItsThreads) {
  // P = 2 on the 2-thread node: each rank is a 1-thread device, so its products run at
  // the 1-thread rate; its decode reads every weight at one token like the single
  // pipeline, at half the rate.
  const StrategyPlan single = plan_strategy(tiny_request(1024, 1), "single");
  const StrategyPlan ring = plan_strategy(tiny_request(1024, 2), "ring");
  EXPECT_NE(ring.layout.find("x 1 threads"), std::string::npos) << ring.layout;
  EXPECT_NE(single.layout.find("x 2 threads"), std::string::npos) << single.layout;
  // Per token the rank does every product at 50 instead of 100 GFLOP/s (the attention
  // over half the cache at half the rate costs the same): the difference is their time
  // at 100 GFLOP/s, plus the merges.
  const ModelShape m = *named_shape("tiny");
  const double products = (double(m.n_layer) * 2 * double(m.layer_matmul_params()) +
                           2.0 * double(m.n_vocab) * double(m.n_embd)) / 100e9;
  EXPECT_GT(ring.decode_seconds_per_token, single.decode_seconds_per_token + 0.99 * products);
  EXPECT_LT(ring.decode_seconds_per_token, single.decode_seconds_per_token + 1.5 * products);
}

TEST(PlannerCurves, MoreRanksThanCoresTakeTurns) {
  // 4 ranks x 1 thread on the 2-thread node: each gets half a core, so its products
  // take twice their 1-thread time (decode reads every weight at one token on each rank).
  const ModelShape m = *named_shape("tiny");
  const double one_thread = (double(m.n_layer) * 2 * double(m.layer_matmul_params()) +
                             2.0 * double(m.n_vocab) * double(m.n_embd)) / 50e9;
  const StrategyPlan two = plan_strategy(tiny_request(1024, 2, 1), "ring");
  const StrategyPlan four = plan_strategy(tiny_request(1024, 4, 1), "ring");
  // Everything a rank computes doubles (its products, a quarter of the cache's attention
  // instead of half, its ops' fixed costs): at least the products' time more than on 2.
  EXPECT_GT(two.decode_seconds_per_token, one_thread);
  EXPECT_GT(four.decode_seconds_per_token, two.decode_seconds_per_token + 0.99 * one_thread);
}

TEST(PlannerCurves, ACallOfAShapeTheProfileHoldsReadsItsOwnCurve) {
  // The tiny shape's Q/K/V products at 10 GFLOP/s per thread instead of the grid's 50,
  // and its attention at 5 instead of 20: the single prefill of N = 512 (one chunk)
  // grows by exactly those calls' difference, and a shape the profile does not hold
  // (f32 products of other sizes) keeps the grid's rate.
  const ModelShape m = *named_shape("tiny");
  const double L = double(m.n_layer), H = double(m.n_head), G = double(m.n_head_kv),
               d = double(m.head_dim), D = double(m.n_embd), c = 512;
  PlanRequest base = tiny_request(512, 1, 1);
  PlanRequest own = base;
  const std::string qkv = shape_matmul_key("f32", MatKind::Qkv, (H + 2 * G) * d, D);
  own.hw.curves.shape_matmul[qkv] = Curve::grid({"threads", "tokens"}, {{1, 2}, {1, 512}}, 10e9);
  own.hw.curves.shape_attention[shape_attention_key(d, H / G)] =
      Curve::grid({"threads", "queries", "keys", "heads"}, {{1, 2}, {1, 512}, {1, 512}, {1, 64}}, 5e9);
  const double qkv_flops = 2 * c * (H + 2 * G) * d * D, attn_flops = 4 * d * H * c * (c + 1) / 2;
  const double more = L * (qkv_flops / 10e9 - qkv_flops / 50e9 + attn_flops / 5e9 - attn_flops / 20e9);
  const double t0 = plan_strategy(base, "single").prefill_seconds;
  const double t1 = plan_strategy(own, "single").prefill_seconds;
  EXPECT_NEAR(t1 - t0, more, 1e-6 * t1);
  // Keys name the type as calibrate spells it (the planner's fp16 is f16), the kind and
  // the whole call's rows x cols.
  EXPECT_EQ(shape_matmul_key("fp16", MatKind::GateUp, 1536, 288), "f16 gate_up 1536x288");
  EXPECT_EQ(shape_attention_key(48, 1), "d48 g1");
}

TEST(PlannerCurves, ShapeCurvesSurviveTheProfileFileAndRetiredCurvesAreSkipped) {
  HardwareProfile h = flat_cpu();
  h.curves.shape_matmul["f32 qkv 864x288"] = Curve::grid({"threads", "tokens"}, {{1, 2}, {1, 512}}, 7e9);
  h.curves.shape_attention["d48 g1"] = Curve::grid({"threads", "queries"}, {{1, 2}, {1, 512}}, 3e9);
  auto j = profile_to_json(h);
  // A profile of an earlier tandem with the one-time curves nothing reads now.
  j["curves"]["graph_build"] = curve_to_json(Curve::grid({"threads"}, {{1}}, 1e-3));
  const HardwareProfile back = profile_from_json(j, "profile");
  ASSERT_EQ(back.curves.shape_matmul.count("f32 qkv 864x288"), 1u);
  EXPECT_NEAR(back.curves.shape_matmul.at("f32 qkv 864x288").at({{"threads", 2}, {"tokens", 100}}), 7e9, 1);
  ASSERT_EQ(back.curves.shape_attention.count("d48 g1"), 1u);
  j["curves"]["no_such_curve"] = curve_to_json(Curve::grid({"threads"}, {{1}}, 1));
  EXPECT_THROW(profile_from_json(j, "profile"), tandem::Error);
}
