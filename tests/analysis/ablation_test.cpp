// tandem bench --ablation: every configuration runs and is reported; the speedups are
// over the all-off row; the CLI prints the table and the JSON.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/test_model.hpp"
#include "support/test_paths.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/analysis/ablation.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/synth.hpp"

using namespace tandem;

namespace {

std::string tiny_model() {
  return test::write_test_model("ablation", {.n_embd = 64, .n_layer = 2, .n_head = 4, .n_head_kv = 2,
                                             .n_ff = 128, .n_ctx = 256, .type = DType::F32,
                                             .n_vocab = 200});
}

TEST(Ablation, ConfigurationsTurnOneThingOffEach) {
  const auto c = analysis::ablation_configs();
  ASSERT_EQ(c.size(), 8u);
  EXPECT_EQ(c.front().name, "all on");
  EXPECT_EQ(c.back().name, "all off");
  EXPECT_FALSE(c.back().kv_cache);
  EXPECT_TRUE(c.back().engine.reference_kernels);
  for (size_t i = 1; i + 1 < c.size(); ++i) {
    const auto& e = c[i].engine;
    const int off = !c[i].kv_cache + e.reference_kernels + !e.flash_attention + !e.memory_plan +
                    !e.fusion + !e.graph_reuse;
    EXPECT_EQ(off, 1) << c[i].name;
  }
}

TEST(Ablation, RunsEveryConfiguration) {
  const auto m = load_model(tiny_model());
  kernels::ThreadPool pool(2);
  analysis::AblationOptions o;
  o.n_prompt = 24;
  o.n_gen = 3;
  o.repeats = 2;
  int calls = 0;
  o.progress = [&](int i, int n, const std::string&) {
    EXPECT_EQ(i, calls++);
    EXPECT_EQ(n, 17);
  };
  const auto rows = analysis::run_ablation(*m, pool, o);
  ASSERT_EQ(rows.size(), 8u);
  EXPECT_EQ(calls, 17);
  for (const auto& r : rows) {
    EXPECT_EQ(r.prefill_s.size(), 2u);
    EXPECT_GT(r.prefill_tokens_per_s, 0);
    EXPECT_GT(r.decode_tokens_per_s, 0);
    EXPECT_GT(r.peak_bytes, double(m->weight_bytes()));
    EXPECT_NEAR(r.prefill_speedup, r.prefill_tokens_per_s / rows.back().prefill_tokens_per_s, 1e-9);
  }
  EXPECT_DOUBLE_EQ(rows.back().prefill_speedup, 1.0);
  // One buffer per value needs more than the plan.
  EXPECT_GT(rows[4].activation_bytes, rows[0].activation_bytes) << rows[4].config.name;
  EXPECT_THROW(analysis::run_ablation(*m, pool, {0, 1, 1, 1, {}, {}}), Error);
}

TEST(Ablation, CliTableAndJson) {
  const std::string model = tiny_model();
  const auto table = test::run("(" + test::tandem_bin() + " bench --ablation -m " + model +
                               " -p 16 -n 2 -r 1 -t 1 2>/dev/null)");
  EXPECT_EQ(table.code, 0);
  for (const char* name : {"all on", "no-kv-cache", "reference kernels", "no-flash-attn",
                           "no-memory-plan", "no-fusion", "no-graph-reuse", "all off"})
    EXPECT_NE(table.out.find(name), std::string::npos) << name;
  const auto json = test::run("(" + test::tandem_bin() + " bench --ablation --json -m " + model +
                              " -p 16 -n 2 -r 1 -t 1 2>/dev/null)");
  ASSERT_EQ(json.code, 0);
  const auto j = nlohmann::json::parse(json.out);
  ASSERT_EQ(j.size(), 8u);
  EXPECT_EQ(j[0]["n_prompt"], 16);
  EXPECT_GT(j[0]["prefill_tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(j[7]["prefill_speedup_over_all_off"].get<double>(), 1.0);
  const auto bad = test::run(test::tandem_bin() + " bench --ablation -m " + model +
                             " -p 16,32");
  EXPECT_EQ(bad.code, 2);
}

}  // namespace
