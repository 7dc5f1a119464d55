// tandem calibrate where mpirun is missing: it fails naming the links it cannot measure,
// never writing placeholder figures. With --no-links the profile leaves intra_node and
// inter_node out and says so, plan uses it for one device and refuses more naming the
// missing fields, compare measures P > 1 without a prediction.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/test_paths.hpp"

using tandem::test::run;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {
// The tiny shape's five products and its attention, each a rate, in profile `p`.
void expect_tiny_calls(const nlohmann::json& p) {
  const auto& shapes = p.at("curves").at("shape_matmul");
  for (const char* key : {"f16 qkv 864x288", "f16 gate_up 1536x288", "f16 plain 288x288",
                          "f16 plain 288x768", "f16 plain 32000x288"}) {
    ASSERT_TRUE(shapes.contains(key)) << key << "\n" << shapes.dump(1);
    for (const auto& v : shapes.at(key).at("values")) EXPECT_GT(v.get<double>(), 1e8) << key;
  }
  EXPECT_TRUE(p.at("curves").at("shape_attention").contains("d48 g1"));
}
}  // namespace

TEST(Calibrate, WithoutMpirunFailsNamingTheLinksOrLeavesThemOutWhenAsked) {
  const std::string prof = temp_dir() + "/prof.json";
  // A PATH where no mpirun can be found (the program is started by its full path).
  const auto r = run("PATH=/nonexistent " + tandem_bin() + " calibrate -t 1 --types f32 -o " + prof);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("MPI links cannot be measured: mpirun is not on PATH"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--no-links"), std::string::npos) << r.out;
  EXPECT_FALSE(std::ifstream(prof).good()) << "a profile was written without its links";

  const auto n = run("PATH=/nonexistent " + tandem_bin() + " calibrate -t 1 --types f32 --no-links -o " + prof);
  ASSERT_EQ(n.code, 0) << n.out;
  std::ifstream in(prof);
  const auto j = nlohmann::json::parse(in);
  EXPECT_FALSE(j.contains("intra_node")) << j.dump(2);
  EXPECT_FALSE(j.contains("inter_node")) << j.dump(2);
  EXPECT_NE(j.at("description").get<std::string>().find("no links (--no-links)"), std::string::npos);
  EXPECT_GT(j.at("flops").at("f32").get<double>(), 1e9);
  // The node's curves, measured: products of the asked type, attention, ops, bandwidth.
  EXPECT_EQ(j.at("threads").get<int>(), 1);
  const auto& cv = j.at("curves");
  EXPECT_TRUE(cv.at("matmul").contains("f32"));
  EXPECT_FALSE(cv.at("matmul").contains("q8_0"));
  for (const char* k : {"attention", "op_overhead", "bandwidth"}) {
    ASSERT_TRUE(cv.contains(k)) << k;
    for (const auto& v : cv.at(k).at("values")) EXPECT_GT(v.get<double>(), 0) << k;
  }
  EXPECT_FALSE(cv.contains("intra_message"));

  const auto one = run(tandem_bin() + " plan --model tiny --tokens 4096 --hardware " + prof);
  EXPECT_EQ(one.code, 0) << one.out;
  const auto two = run(tandem_bin() + " plan --model tiny --tokens 4096 --gpus 2 --hardware " + prof);
  EXPECT_EQ(two.code, 2) << two.out;
  EXPECT_NE(two.out.find("--gpus 2"), std::string::npos) << two.out;
  EXPECT_NE(two.out.find("no link figures (intra_node, inter_node"), std::string::npos) << two.out;

  // compare keeps working with it: P = 1 predicted, P > 1 measured without a prediction.
  const auto c = run(tandem_bin() + " compare --hardware " + prof + " --lengths 16 --schemes ring "
                     "--launcher threads --decode-tokens 0 --naive-max 0 -t 1 --rounds 1 --out " +
                     temp_dir() + "/report");
  EXPECT_EQ(c.code, 0) << c.out;
  EXPECT_NE(c.out.find("P > 1 runs are measured without a prediction"), std::string::npos) << c.out;
}

TEST(Calibrate, CompareCalibratesThisMachineOnceThenReadsTheCache) {
  const std::string cache = temp_dir() + "/cache";
  const std::string cmd = "XDG_CACHE_HOME=" + cache + " " + tandem_bin() +
                          " compare --lengths 16 --schemes ring --launcher threads --decode-tokens 0 --rounds 1 "
                          "--naive-max 0 --out " + temp_dir() + "/report";
  const auto first = run(cmd);
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_NE(first.out.find("calibrating once into " + cache + "/tandem/profiles/"), std::string::npos)
      << first.out;
  // The single run is predicted on the calibrated profile: a "plan s" figure, not "-".
  const auto j = nlohmann::json::parse(std::ifstream(temp_dir() + "/report/results.json"));
  EXPECT_NE(j.at("planner_hardware").get<std::string>().find(cache + "/tandem/profiles/"), std::string::npos);
  bool predicted = false;
  for (const auto& r : j.at("runs"))
    if (r.at("strategy") == "single") predicted = r.at("predicted").is_object();
  EXPECT_TRUE(predicted) << j.dump(2);
  // Then the model's own calls, once: its products timed inside its forward pass and its
  // attention, at 1 and 2 threads (the profile's).
  EXPECT_NE(first.out.find("measuring the model's own calls"), std::string::npos) << first.out;
  const std::string profile =
      j.at("planner_hardware").get<std::string>();
  const auto p = nlohmann::json::parse(std::ifstream(profile));
  expect_tiny_calls(p);
  // The decode step timed twice, half a minute or more apart, the faster setting the
  // rate a decode reads memory at, as a fraction of the bandwidth curve's.
  EXPECT_NE(first.out.find("decode step at 16640 keys"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("(before the rounds "), std::string::npos) << first.out;
  // The one-query calls timed inside a decode step at each in-pass depth, against the grid.
  EXPECT_NE(first.out.find("; one query: 513:"), std::string::npos) << first.out;
  const double eff = p.at("memory_efficiency").get<double>();
  EXPECT_GE(eff, 0.25);
  EXPECT_LE(eff, 1.0);
  // Its compute curves held at the cores' uncontended rate, and each run predicted on
  // the cores as they went.
  for (const char* k : {"product", "attention", "stream"}) EXPECT_GT(p.at("core_rate").at(k).get<double>(), 1e8) << k;
  for (const auto& r : j.at("runs")) EXPECT_EQ(r.at("core_rates").size(), p.at("threads").get<size_t>());
  const auto second = run(cmd);
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_EQ(second.out.find("calibrating once"), std::string::npos) << second.out;
  EXPECT_EQ(second.out.find("measuring the model's own calls"), std::string::npos) << second.out;
  // --update adds a model's calls to a profile made with the same threads, only.
  const auto bare = run(tandem_bin() + " calibrate --update -o " + profile);
  EXPECT_EQ(bare.code, 2) << bare.out;
  EXPECT_NE(bare.out.find("--update: adds a model's calls to a profile; give --model"), std::string::npos) << bare.out;
  const auto threads = run(tandem_bin() + " calibrate --update -t 7 -m tiny -o " + profile);
  EXPECT_EQ(threads.code, 2) << threads.out;
  EXPECT_NE(threads.out.find("not -t 7"), std::string::npos) << threads.out;
}

TEST(Calibrate, ANamedShapesCallsAreTimedAloneAndPlanReadsThem) {
  // No file: each of the shape's calls is timed alone, fused as the runtime fuses them.
  const std::string prof = temp_dir() + "/named.json";
  const auto r = run(tandem_bin() + " calibrate -t 1 --types f16 --no-links -m tiny -o " + prof);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto p = nlohmann::json::parse(std::ifstream(prof));
  expect_tiny_calls(p);
  const auto plan = run(tandem_bin() + " plan --model tiny --dtype fp16 --tokens 512 --hardware " + prof);
  EXPECT_EQ(plan.code, 0) << plan.out;
  const auto bad = run(tandem_bin() + " calibrate -t 1 --no-links -m no-such-model -o " + prof);
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("--model 'no-such-model': not a GGUF file nor a named shape"), std::string::npos) << bad.out;
}
