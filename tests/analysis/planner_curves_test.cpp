// The planner on a profile with curves (what `tandem calibrate` writes): a device is a
// rank's threads, the prefill runs chunk by chunk as the runtime's, and every matrix
// product, attention call and op reads its rate from the curves.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

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

TEST(PlannerCurves, ADecodeStepIsNoFasterThanItsNodesReadsFromMemory) {
  // Every call fast (flat_cpu); reads from cache at 1 TB/s up to 80 MB, from memory at
  // 1 GB/s from 120 MB. A decode step reads its weights (the layers' and the output
  // head's, f32 here) and its cache once per token; each rank holds a copy of the weights
  // of its own, so the node's working set is every rank's.
  const ModelShape m = *named_shape("tiny");
  const double L = double(m.n_layer), D = double(m.n_embd), V = double(m.n_vocab);
  const double weights = (L * double(m.layer_matmul_params()) + V * D) * 4;  // 60.8 MB
  const double kv_row = L * 2 * double(m.n_head_kv * m.head_dim) * 4;      // every layer's K and V
  auto with_memory = [](int64_t n, int gpus, int threads) {
    PlanRequest r = tiny_request(n, gpus, threads);
    r.hw.curves.bandwidth = Curve::grid({"threads", "bytes"}, {{1, 2}, {80e6, 120e6}});
    r.hw.curves.bandwidth.values = {1e12, 1e9, 1e12, 1e9};
    return r;
  };
  // One device at 1024 tokens: 75 MB, served by the cache; its calls price the step (its
  // elementwise passes read at 1 TB/s here instead of without bound: within 0.1%).
  const double calls = plan_strategy(tiny_request(1024, 1), "single").decode_seconds_per_token;
  EXPECT_NEAR(plan_strategy(with_memory(1024, 1, 0), "single").decode_seconds_per_token, calls, 1e-3 * calls);
  EXPECT_LT(calls, 0.01);
  // Two ranks at 1024: 68 MB each, 136 MB on the node, read from memory: the node's
  // 1 GB/s shared, each rank's step the whole set's time.
  const double ring2 = 2 * (weights + std::ceil(1025.0 / 2) * kv_row) / 1e9;
  EXPECT_NEAR(plan_strategy(with_memory(1024, 2, 0), "ring").decode_seconds_per_token, ring2, 1e-3 * ring2);  // (+ the merges)
  const double ring4 = 4 * (weights + std::ceil(1025.0 / 4) * kv_row) / 1e9;
  EXPECT_NEAR(plan_strategy(with_memory(1024, 4, 1), "ring").decode_seconds_per_token, ring4, 1e-3 * ring4);
  // The runtime's reads at half the curve's rate (memory_efficiency, which calibrate
  // measures from a decode step): twice the time.
  PlanRequest half = with_memory(1024, 2, 0);
  half.hw.memory_efficiency = 0.5;
  EXPECT_NEAR(plan_strategy(half, "ring").decode_seconds_per_token, 2 * ring2, 2e-3 * ring2);
  // One device whose cache outgrows the last-level cache alone: 16384 tokens, 287 MB.
  const double single = (weights + 16384 * kv_row) / 1e9;
  EXPECT_NEAR(plan_strategy(with_memory(16384, 1, 0), "single").decode_seconds_per_token, single, 1e-6 * single);
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

namespace {
// Every kind of work at `x` FLOP/s.
CoreRates all_at(double x) { return {x, x, x}; }
}  // namespace

TEST(PlannerCurves, ADeviceRunsAtThePaceOfTheSlowestCoreInStep) {
  // Curves held at 100 GFLOP/s of every probe; the cores as a run went: core 1 at half.
  auto with_cores = [](int64_t n, int gpus, int threads, std::vector<CoreRates> rates) {
    PlanRequest r = tiny_request(n, gpus, threads);
    r.hw.core_rate = all_at(100e9);
    r.hw.core_rates = std::move(rates);
    return r;
  };
  // Both cores at the held rates: the prediction of a profile without core rates.
  for (const char* s : {"single", "ring"}) {
    SCOPED_TRACE(s);
    const int P = std::string(s) == "single" ? 1 : 2;
    const StrategyPlan plain = plan_strategy(tiny_request(1024, P), s);
    const StrategyPlan same = plan_strategy(with_cores(1024, P, 0, {all_at(100e9), all_at(100e9)}), s);
    EXPECT_NEAR(same.prefill_seconds, plain.prefill_seconds, 1e-9 * plain.prefill_seconds);
    // Core 1 at half: the 2-thread pipeline waits for its thread on core 1, and the two
    // 1-thread ranks (cores 0 and 1) wait for rank 1: every computed second doubles
    // (bandwidth binds nothing here; ring's messages are free on cpu-this's links).
    const StrategyPlan half = plan_strategy(with_cores(1024, P, 0, {all_at(100e9), all_at(50e9)}), s);
    EXPECT_NEAR(half.prefill_seconds, 2 * plain.prefill_seconds, 0.01 * plain.prefill_seconds);
    // (decode: but ring's merge of partial outputs across the ranks, a message each step)
    EXPECT_NEAR(half.decode_seconds_per_token, 2 * plain.decode_seconds_per_token,
                0.03 * plain.decode_seconds_per_token);
    EXPECT_GT(half.decode_seconds_per_token, 1.9 * plain.decode_seconds_per_token);
  }
  // One 1-thread rank on core 0 alone does not wait for core 1.
  const StrategyPlan alone = plan_strategy(with_cores(1024, 1, 1, {all_at(100e9), all_at(50e9)}), "single");
  const StrategyPlan alone_plain = plan_strategy(tiny_request(1024, 1, 1), "single");
  EXPECT_NEAR(alone.prefill_seconds, alone_plain.prefill_seconds, 1e-9 * alone_plain.prefill_seconds);
  // 4 ranks on the 2 cores take turns, two on each (the scheduler spreads them by count,
  // not by speed): the ranks in step wait for the two on the half-speed core, so every
  // computed second doubles, not 2 / 1.5 (both cores' summed rate).
  const StrategyPlan four = plan_strategy(tiny_request(1024, 4, 1), "ring");
  const StrategyPlan four_half = plan_strategy(with_cores(1024, 4, 1, {all_at(100e9), all_at(50e9)}), "ring");
  EXPECT_NEAR(four_half.prefill_seconds, four.prefill_seconds * 2, 0.03 * four.prefill_seconds);
  EXPECT_GT(four_half.decode_seconds_per_token, 1.9 * four.decode_seconds_per_token);
  // Three 1-thread ranks on 2 cores: one core holds two of them, and the third rank waits
  // for both: twice the compute of three ranks on cores of their own, with or without the
  // cores' rates.
  PlanRequest own = tiny_request(1024, 3, 1);
  own.hw.threads = 4;
  const double alone3 = plan_strategy(own, "ring").compute_seconds;
  EXPECT_NEAR(plan_strategy(tiny_request(1024, 3, 1), "ring").compute_seconds / alone3, 2, 0.02);
  EXPECT_NEAR(plan_strategy(with_cores(1024, 3, 1, {all_at(100e9), all_at(100e9)}), "ring").compute_seconds / alone3,
              2, 0.02);
}

TEST(PlannerCurves, WorkOnMoreThanOneCoreRunsAtTheirBusyRates) {
  // Each core at the held 100 GFLOP/s alone; with every core busy (a shared host's cores
  // in a spell) products and attention at half, one-token products at a quarter.
  CoreRates spell = all_at(100e9);
  spell.busy_product = spell.busy_attention = 50e9;
  spell.busy_stream = 25e9;
  auto with = [](int gpus, int threads, CoreRates c) {
    PlanRequest r = tiny_request(1024, gpus, threads);
    r.hw.core_rate = all_at(100e9);
    r.hw.core_rates = {c, c};
    return r;
  };
  // Work on both cores runs as on cores at half alone for products and attention. The
  // one-token products take the busy rate where each core runs ranks of their own (each
  // streams a copy of its weights), the alone rate where one device's threads split one
  // copy.
  for (const auto& [s, P, T] : {std::tuple{"single", 1, 0}, std::tuple{"ring", 2, 0}, std::tuple{"ring", 4, 1}}) {
    SCOPED_TRACE(std::string(s) + " P=" + std::to_string(P));
    CoreRates half = all_at(50e9);
    half.stream = P > 1 ? 25e9 : 100e9;
    const StrategyPlan slow = plan_strategy(with(P, T, spell), s), expect = plan_strategy(with(P, T, half), s);
    const StrategyPlan plain = plan_strategy(tiny_request(1024, P, T), s);
    EXPECT_GT(slow.prefill_seconds, 1.5 * plain.prefill_seconds);
    EXPECT_NEAR(slow.prefill_seconds, expect.prefill_seconds, 1e-9 * expect.prefill_seconds);
    EXPECT_NEAR(slow.decode_seconds_per_token, expect.decode_seconds_per_token,
                1e-9 * expect.decode_seconds_per_token);
  }
  // One thread on core 0 runs alone: its rates, not the busy ones.
  const StrategyPlan alone = plan_strategy(with(1, 1, spell), "single");
  const StrategyPlan alone_plain = plan_strategy(tiny_request(1024, 1, 1), "single");
  EXPECT_NEAR(alone.prefill_seconds, alone_plain.prefill_seconds, 1e-9 * alone_plain.prefill_seconds);
  // Busy rates not read (0): the cores' alone rates stand for them.
  CoreRates unread = spell;
  unread.busy_product = unread.busy_attention = unread.busy_stream = 0;
  const StrategyPlan plain = plan_strategy(tiny_request(1024, 1, 0), "single");
  EXPECT_NEAR(plan_strategy(with(1, 0, unread), "single").prefill_seconds, plain.prefill_seconds,
              1e-9 * plain.prefill_seconds);
}

TEST(PlannerCurves, EachKindOfWorkReadsItsOwnCoreRate) {
  // Core 1 slow at one kind of work at a time: products of a prefill's chunks, its
  // attention, or decode's one-token products.
  PlanRequest r = tiny_request(4096, 2);
  const StrategyPlan plain = plan_strategy(r, "ring");
  r.hw.core_rate = all_at(100e9);
  auto slow_at = [&](CoreWork w) {
    CoreRates slow = all_at(100e9);
    slow.of(w) = 50e9;
    r.hw.core_rates = {all_at(100e9), slow};
    return plan_strategy(r, "ring");
  };
  const StrategyPlan products = slow_at(CoreWork::Product), attention = slow_at(CoreWork::Attention),
                     stream = slow_at(CoreWork::Stream);
  EXPECT_GT(products.prefill_seconds, 1.01 * plain.prefill_seconds);
  EXPECT_GT(attention.prefill_seconds, 1.01 * plain.prefill_seconds);
  // Products and attention slow add up to twice the whole prefill (every computed second
  // doubles); of the one-token products, the prefill has the output head's only.
  EXPECT_NEAR(products.prefill_seconds + attention.prefill_seconds - plain.prefill_seconds,
              2 * plain.prefill_seconds, 0.01 * plain.prefill_seconds);
  const ModelShape m = *named_shape("tiny");
  const double head = 2.0 * double(m.n_vocab) * double(m.n_embd) / 50e9;  // 1 thread: 50 GFLOP/s
  EXPECT_NEAR(stream.prefill_seconds - plain.prefill_seconds, head, 0.01 * head);
  // Decode's products are one-token products: twice their time at the stream rate's half.
  const double one_token = double(m.n_layer) * 2 * double(m.layer_matmul_params()) / 50e9 + head;
  EXPECT_NEAR(stream.decode_seconds_per_token - plain.decode_seconds_per_token, one_token, 0.01 * one_token);
  EXPECT_GT(attention.decode_seconds_per_token, plain.decode_seconds_per_token);
}

TEST(PlannerCurves, CoreRatesAreOnePerThreadAndPositive) {
  nlohmann::json j = profile_to_json(flat_cpu());
  j["core_rate"] = {{"product", 100e9}, {"attention", 90e9}, {"stream", 20e9}};
  j["core_rates"] = {core_rates_to_json(all_at(100e9)), core_rates_to_json({50e9, 80e9, 10e9, 40e9, 70e9, 9e9})};
  ASSERT_TRUE(j["core_rates"][1].contains("busy"));
  EXPECT_FALSE(j["core_rates"][0].contains("busy"));  // not read: left out
  const HardwareProfile h = profile_from_json(j, "p.json");
  EXPECT_EQ(h.core_rate.attention, 90e9);
  ASSERT_EQ(h.core_rates.size(), 2u);
  EXPECT_EQ(h.core_rates[1].stream, 10e9);
  EXPECT_EQ(h.core_rates[1].busy_attention, 70e9);
  EXPECT_EQ(h.core_rates[0].busy_stream, 0);
  EXPECT_EQ(profile_to_json(h)["core_rates"], j["core_rates"]);
  for (const auto& [field, bad] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"core_rates", {core_rates_to_json(all_at(1e9))}},
           {"core_rates", {core_rates_to_json(all_at(1e9)), core_rates_to_json(all_at(-1))}},
           {"core_rates", "fast"},
           {"core_rates", {core_rates_to_json(all_at(1e9)), {{"product", 1e9}, {"attention", 1e9},
                                                             {"stream", 1e9}, {"busy", {{"stream", -1}}}}}},
           {"core_rates", {core_rates_to_json(all_at(1e9)), {{"product", 1e9}, {"attention", 1e9},
                                                             {"stream", 1e9}, {"busy", 2}}}},
           {"core_rate", {{"product", -1}}},
           {"core_rate", {{"stream", "quick"}}}}) {
    nlohmann::json b = j;
    b[field] = bad;
    try {
      profile_from_json(b, "p.json");
      ADD_FAILURE() << field << " = " << bad.dump() << " accepted";
    } catch (const tandem::Error& e) {
      EXPECT_NE(std::string(e.what()).find("'" + field), std::string::npos) << e.what();
    }
  }
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

TEST(PlannerCurves, PassKvRingsArePricedAtTheKeysOfTheirConveyorsChunks) {
  // Attention at 20 GFLOP/s per thread on calls of up to 1024 keys, falling to 5 at 4096
  // keys and beyond (K and V no longer in cache). A pass-KV ring attends its blocks chunk
  // by chunk as the conveyor hands them over (512 rows at whole shards): every call
  // reads at most 512 keys (1024 with the other rank's beside them in the cache), so it
  // costs what it costs on a profile where attention runs at 20 at any length. Pass-Q
  // attends each visiting block against its whole cache, in calls of thousands of keys:
  // slower on the falling curve.
  PlanRequest flat = tiny_request(8192, 2);  // sp_chunk 0: whole shards
  PlanRequest falling = flat;
  falling.hw.curves.attention = Curve::grid({"threads", "keys"}, {{1, 2}, {1024, 4096}});
  falling.hw.curves.attention.values = {20e9, 5e9, 40e9, 10e9};
  for (const char* ring : {"ring", "zigzag"}) {
    const double t_flat = plan_strategy(flat, ring).prefill_seconds;
    EXPECT_NEAR(plan_strategy(falling, ring).prefill_seconds, t_flat, 1e-9 * t_flat) << ring;
  }
  EXPECT_GT(plan_strategy(falling, "pass-q").prefill_seconds,
            1.5 * plan_strategy(flat, "pass-q").prefill_seconds);
  // The single pipeline's calls read its whole cache too.
  EXPECT_GT(plan_strategy(falling, "single").prefill_seconds,
            1.5 * plan_strategy(flat, "single").prefill_seconds);
  // A GPU profile (no threads) prices each block as one call, as GPU ring attention runs
  // it: there the ring reads the curve at its blocks' keys.
  PlanRequest gpu_flat = flat, gpu_falling = falling;
  gpu_flat.hw.threads = gpu_falling.hw.threads = 0;
  EXPECT_GT(plan_strategy(gpu_falling, "ring").prefill_seconds,
            1.5 * plan_strategy(gpu_flat, "ring").prefill_seconds);
}

TEST(PlannerCurves, ACausalCallOfMoreQueriesThanTheCurveHoldsRunsAsBlocks) {
  // The tiny model's attention at 20 GFLOP/s on calls whose queries see 1024 keys, 5 at
  // 16384 (log-log between), the same at any query count up to the curve's 2048. A
  // Ulysses rank attends its 3 heads of all 16384 queries in one causal call: priced as 8
  // blocks of 2048 queries, block i at the keys its queries see (2048 i + 1024.5), not
  // as one call at the mean 8192.5 keys. (One rank per node: no other rank's K and V in
  // its cache; RanksRunningAtOnceShareTheLastLevelCache covers that.)
  const ModelShape m = *named_shape("tiny");
  const double L = double(m.n_layer), d = double(m.head_dim), heads = double(m.n_head) / 2;
  auto with_rate = [&](double at_1024, double at_16384) {
    PlanRequest r = tiny_request(16384, 2, 1);
    r.gpus_per_node = 1;
    Curve c = Curve::grid({"threads", "queries", "keys"}, {{1, 2}, {1, 2048}, {1024, 16384}});
    for (size_t t = 0; t < 2; ++t)
      for (size_t q = 0; q < 2; ++q) {
        c.values[c.index({t, q, 0})] = at_1024 * double(t + 1);
        c.values[c.index({t, q, 1})] = at_16384 * double(t + 1);
      }
    r.hw.curves.shape_attention[shape_attention_key(d, double(m.n_head / m.n_head_kv))] = c;
    return plan_strategy(r, "ulysses").prefill_seconds;
  };
  auto rate = [](double k) { return 20e9 * std::pow(0.25, std::log(k / 1024) / std::log(16.0)); };
  double blocks = 0;
  for (int i = 0; i < 8; ++i) {
    const double k = 2048.0 * i + 1024.5;
    blocks += 4 * d * heads * 2048 * k / rate(k);
  }
  const double flat = 4 * d * heads * 16384 * 8192.5 / 20e9;
  EXPECT_NEAR(with_rate(20e9, 5e9) - with_rate(20e9, 20e9), L * (blocks - flat), 1e-6 * L * blocks);
  // (One call at the mean keys would have cost this much less.)
  EXPECT_GT(blocks, 1.1 * 4 * d * heads * 16384 * 8192.5 / rate(8192.5));
}

TEST(PlannerCurves, RanksRunningAtOnceShareTheLastLevelCache) {
  // Attention at 20 GFLOP/s per thread on calls of up to 512 keys, 5 from 1024 keys. A
  // pass-KV ring's calls read 512 keys each (its conveyor's chunks). Two one-thread ranks
  // on one 2-core node run at once, each with K and V of its own in the node's cache:
  // their calls cost what calls of 1024 keys cost alone, as on a curve at 5 everywhere.
  // On two nodes (a rank each) they cost what they cost alone, as on a curve at 20.
  auto at = [](double up_to_512, double from_1024, int64_t n = 8192) {
    PlanRequest r = tiny_request(n, 2);  // sp_chunk 0: whole shards
    r.hw.curves.attention = Curve::grid({"threads", "keys"}, {{1, 2}, {512, 1024}});
    r.hw.curves.attention.values = {up_to_512, from_1024, 2 * up_to_512, 2 * from_1024};
    return r;
  };
  for (const char* ring : {"ring", "zigzag"}) {
    const double shared = plan_strategy(at(20e9, 5e9), ring).prefill_seconds;
    EXPECT_NEAR(shared, plan_strategy(at(5e9, 5e9), ring).prefill_seconds, 1e-9 * shared) << ring;
    PlanRequest apart = at(20e9, 5e9), apart_flat = at(20e9, 20e9);
    apart.gpus_per_node = apart_flat.gpus_per_node = 1;
    const double alone = plan_strategy(apart, ring).prefill_seconds;
    EXPECT_NEAR(alone, plan_strategy(apart_flat, ring).prefill_seconds, 1e-9 * alone) << ring;
    EXPECT_GT(shared, 1.5 * alone) << ring;
  }
  // A decode step's one-query calls keep their own keys (the step is bounded by its
  // reads from memory instead): at 512 tokens, a rank's 257 keys cost what they cost on
  // the curve at 20.
  const double decode = plan_strategy(at(20e9, 20e9, 512), "ring").decode_seconds_per_token;
  EXPECT_NEAR(plan_strategy(at(20e9, 5e9, 512), "ring").decode_seconds_per_token, decode, 1e-9 * decode);
}

TEST(PlannerCurves, RanksThatFinishTheirHeadsEarlyLeaveTheirCoresToTheRest) {
  // Ulysses on 4 one-thread ranks of a 2-core node splits the tiny model's 6 heads 2, 2,
  // 1, 1. Attention at one rate at any length, products, ops and links too fast to count:
  // the prefill is the attention. The ranks take turns on the cores until the 1-head
  // ranks are done, then each 2-head rank has a core: 6 heads' work on 2 cores, as
  // Ulysses on 2 ranks (3 heads each, a core each), not the 2-head ranks' work at half
  // a core throughout (4/3 of it).
  auto request = [](int gpus) {
    PlanRequest r = tiny_request(4096, gpus, 1);
    r.hw.curves.matmul["f32"].values.assign(r.hw.curves.matmul["f32"].values.size(), 1e30);
    r.hw.curves.op_overhead = Curve{};
    r.hw.intra = r.hw.inter = Link{1e30, 0};
    return r;
  };
  const double two = plan_strategy(request(2), "ulysses").prefill_seconds;
  const double four = plan_strategy(request(4), "ulysses").prefill_seconds;
  EXPECT_GT(two, 0);
  EXPECT_NEAR(four, two, 1e-3 * two);
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
