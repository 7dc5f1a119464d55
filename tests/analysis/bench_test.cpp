// `tandem bench` and `tandem bench --roofline` end to end (JSON rows, depth, the roofline
// cache, bad flags), plus the cost formulas and the roofline file round trip. No timed
// assertions: the machine is shared; only signs and loose roofline fractions are checked.
#include <gtest/gtest.h>

#include <cmath>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "support/test_paths.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/analysis/bench.hpp"
#include "tandem/analysis/roofline.hpp"
#include "tandem/core/error.hpp"

using tandem::test::run;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;
namespace ta = tandem::analysis;

namespace {

// A model whose matrices (about 120 MiB of f32) are well above a 32 MiB L3, so decode is
// bound by memory bandwidth as on real models.
const std::string& model_path() {
  static const std::string path = [] {
    const std::string p = temp_dir() + "/bench-model.gguf";
    const auto r = run(tandem_bin() + " make-model --vocab-size 256 --dim 512 --layers 8 --heads 8 "
                       "--kv-heads 4 --ff 2048 --type f32 -o " + p);
    EXPECT_EQ(r.code, 0) << r.out;
    return p;
  }();
  return path;
}

// A roofline cache for one thread, measured once with a 256 MiB buffer.
const std::string& roofline_path() {
  static const std::string path = [] {
    const std::string p = temp_dir() + "/roofline.json";
    const auto r = run(tandem_bin() + " bench --roofline -t 1 --roofline-mib 256 --roofline-file " + p);
    EXPECT_EQ(r.code, 0) << r.out;
    return p;
  }();
  return path;
}

tandem::test::RunResult bench(const std::string& args) {
  return run(tandem_bin() + " bench -m " + model_path() + " -t 1 --roofline-file " +
             roofline_path() + " " + args);
}

nlohmann::json bench_json(const std::string& args) {
  const auto r = bench(args + " --json 2>/dev/null");
  EXPECT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  EXPECT_TRUE(j.is_array()) << r.out;
  return j;
}

void expect_sane_row(const nlohmann::json& row, int repeats) {
  SCOPED_TRACE(row.dump());
  const double tps = row["tokens_per_s"].get<double>();
  EXPECT_GT(tps, 0.0);
  EXPECT_LE(row["tokens_per_s_min"].get<double>(), tps);
  EXPECT_GE(row["tokens_per_s_max"].get<double>(), tps);
  EXPECT_EQ(row["repeats"].get<int>(), repeats);
  EXPECT_EQ(row["threads"].get<int>(), 1);
  EXPECT_EQ(row["model"].get<std::string>(), model_path());
  const double f = row["roofline_fraction"].get<double>();
  // Both the row and the roofline are timings on a shared machine: only the sign and
  // finiteness are checked here (the fraction's formula is checked in BenchCosts).
  EXPECT_GT(f, 0.0);
  EXPECT_TRUE(std::isfinite(f));
  EXPECT_GT(row["read_bandwidth"].get<double>(), 0.0);
  EXPECT_GT(row["fma_peak"].get<double>(), 0.0);
  if (row["n_gen"].get<int64_t>() > 0) {
    EXPECT_EQ(row["roofline_bound"], "bandwidth");
    EXPECT_DOUBLE_EQ(row["bandwidth_fraction"].get<double>(), f);
  } else {
    EXPECT_EQ(row["roofline_bound"], "fma");
    EXPECT_DOUBLE_EQ(row["fma_peak_fraction"].get<double>(), f);
  }
}

void expect_bad(const std::string& args, const std::string& needle) {
  SCOPED_TRACE("tandem bench " + args);
  const auto r = run(tandem_bin() + " bench " + args);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << r.out;
}

}  // namespace

TEST(BenchCli, RooflineNumbersArePositiveAndCached) {
  const auto entries = ta::load_rooflines(roofline_path());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].threads, 1);
  EXPECT_GT(entries[0].read_bandwidth, 0.0);
  EXPECT_GT(entries[0].fma_peak, 0.0);
  EXPECT_EQ(entries[0].buffer_bytes, size_t(256) << 20);
  // --json prints the fresh measurement as one object.
  const std::string p = temp_dir() + "/roofline-json.json";
  const auto r = run(tandem_bin() + " bench --roofline --json -t 1 --roofline-mib 64 --roofline-file " + p);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["read_bandwidth"].get<double>(), 0.0);
  EXPECT_GT(j["fma_peak"].get<double>(), 0.0);
  EXPECT_TRUE(std::filesystem::exists(p));
}

TEST(BenchCli, JsonHasTheRequestedTests) {
  const auto j = bench_json("-p 16,32 -n 4 -r 2");
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[0]["test"], "pp16");
  EXPECT_EQ(j[0]["n_prompt"], 16);
  EXPECT_EQ(j[1]["test"], "pp32");
  EXPECT_EQ(j[2]["test"], "tg4");
  EXPECT_EQ(j[2]["n_gen"], 4);
  for (const auto& row : j) {
    expect_sane_row(row, 2);
    EXPECT_EQ(row["depth"], 0);
  }
}

TEST(BenchCli, DepthPrefillsTheCacheFirst) {
  const auto j = bench_json("-p 8 -n 3 -d 40 -r 1");
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["test"], "pp8@d40");
  EXPECT_EQ(j[1]["test"], "tg3@d40");
  for (const auto& row : j) {
    expect_sane_row(row, 1);
    EXPECT_EQ(row["depth"], 40);
  }
}

TEST(BenchCli, TableByDefault) {
  const auto r = bench("-p 8 -n 0 -r 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(" pp8 |"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("tg"), std::string::npos) << r.out;  // -n 0 skips generation
  EXPECT_NE(r.out.find("FMA peak"), std::string::npos) << r.out;
}

TEST(BenchCli, MeasuresTheRooflineWhenTheFileIsMissing) {
  const std::string p = temp_dir() + "/missing/roofline.json";
  const auto r = run(tandem_bin() + " bench -m " + model_path() +
                     " -t 1 -p 0 -n 2 -r 1 --roofline-mib 256 --roofline-file " + p);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("measuring it first"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" tg2 |"), std::string::npos) << r.out;
  EXPECT_TRUE(ta::find_roofline(ta::load_rooflines(p), 1).has_value());
}

TEST(BenchCli, BadFlagsExitTwoNamingTheFlag) {
  const std::string m = " -m " + model_path() + " --roofline-file " + roofline_path();
  expect_bad(m + " -r 0", "--repetitions");
  expect_bad(m + " -p abc", "--n-prompt");
  expect_bad(m + " -n -3", "--n-gen");
  expect_bad(m + " -d x", "--n-depth");
  expect_bad(m + " -t 0", "--threads");
  expect_bad(m + " --bogus", "--bogus");
  expect_bad(m + " -p 0 -n 0", "-p/-n");
  expect_bad("-p 8", "--model");
  expect_bad("-m " + temp_dir() + "/no-such.gguf", "--model");
  const std::string bad = temp_dir() + "/bad-roofline.json";
  ASSERT_EQ(run("echo '{\"entries\":[{\"threads\":1}]}' > " + bad).code, 0);
  expect_bad("-m " + model_path() + " -t 1 -p 8 -n 0 --roofline-file " + bad, "read_bandwidth");
}

TEST(BenchCosts, FormulasMatchTheModelShape) {
  const auto m = tandem::load_model(model_path());
  const auto& h = m->hparams();
  EXPECT_DOUBLE_EQ(ta::decode_bytes_per_token(*m, 0), double(m->weight_bytes()));
  EXPECT_DOUBLE_EQ(ta::decode_bytes_per_token(*m, 10) - ta::decode_bytes_per_token(*m, 0),
                   2.0 * double(h.n_layer) * 10 * double(h.kv_dim()) * 4);
  const double D = double(h.n_embd);
  const double layer = 2 * D * double(h.q_dim()) + 2 * D * double(h.kv_dim()) + 3 * D * double(h.n_ff);
  const double one = 2 * double(h.n_layer) * layer + 2 * double(h.n_vocab) * D +
                     double(h.n_layer) * 4 * double(h.q_dim());
  EXPECT_DOUBLE_EQ(ta::prefill_flops(*m, 1, 0), one);
  // Attention grows with the depth: one more visible key per token per unit of depth.
  EXPECT_DOUBLE_EQ(ta::prefill_flops(*m, 4, 5) - ta::prefill_flops(*m, 4, 0),
                   double(h.n_layer) * 4 * double(h.q_dim()) * 4 * 5);

  ta::Roofline roof{1, 1e10, 1e11, "test", 0};
  const ta::BenchTest tg{ta::BenchTest::Kind::Generate, 1, 0};
  const auto p = ta::roofline_point(*m, tg, 10.0, roof);
  EXPECT_TRUE(p.bandwidth_bound);
  EXPECT_DOUBLE_EQ(p.bound_tokens_per_s, 1e10 / ta::decode_bytes_per_token(*m, 1));
  EXPECT_DOUBLE_EQ(p.fraction, 10.0 / p.bound_tokens_per_s);
}

TEST(BenchCosts, TestNamesAndSummary) {
  using K = ta::BenchTest::Kind;
  EXPECT_EQ((ta::BenchTest{K::Prefill, 512, 0}.name()), "pp512");
  EXPECT_EQ((ta::BenchTest{K::Generate, 128, 0}.name()), "tg128");
  EXPECT_EQ((ta::BenchTest{K::Generate, 64, 8192}.name()), "tg64@d8192");
  ta::BenchResult r;
  r.tokens_per_s = {4, 1, 3, 2};
  ta::summarize(r);
  EXPECT_DOUBLE_EQ(r.median, 2.5);
  EXPECT_DOUBLE_EQ(r.min, 1);
  EXPECT_DOUBLE_EQ(r.max, 4);
  EXPECT_DOUBLE_EQ(r.mean, 2.5);
  EXPECT_NEAR(r.stddev, 1.2909944, 1e-6);
}

TEST(RooflineFile, SaveReplacesTheEntryOfItsThreadCount) {
  const std::string p = temp_dir() + "/rt/roofline.json";
  ta::save_roofline(p, {2, 1e10, 2e11, "avx2", 1 << 20});
  ta::save_roofline(p, {1, 5e9, 1e11, "avx2", 1 << 20});
  ta::save_roofline(p, {2, 3e10, 4e11, "avx512f", 1 << 20});
  const auto e = ta::load_rooflines(p);
  ASSERT_EQ(e.size(), 2u);
  const auto two = ta::find_roofline(e, 2);
  ASSERT_TRUE(two.has_value());
  EXPECT_DOUBLE_EQ(two->read_bandwidth, 3e10);
  EXPECT_EQ(two->isa, "avx512f");
  EXPECT_FALSE(ta::find_roofline(e, 3).has_value());
  EXPECT_TRUE(ta::load_rooflines(temp_dir() + "/none.json").empty());
  ASSERT_EQ(run("echo 'not json' > " + temp_dir() + "/garbage.json").code, 0);
  EXPECT_THROW(ta::load_rooflines(temp_dir() + "/garbage.json"), tandem::Error);
}
