// `tandem plan` end to end: JSON and table output, GGUF input, profile files, bad flags.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tandem/parallel/scheme.hpp"
#include "support/test_paths.hpp"

using tandem::test::run;
using tandem::test::shared_path;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

tandem::test::RunResult plan(const std::string& args) {
  return run(tandem_bin() + " plan " + args);
}

// Exit 2 and a one-line message naming `needle`.
void expect_bad(const std::string& args, const std::string& needle) {
  SCOPED_TRACE("tandem plan " + args);
  const auto r = plan(args);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << r.out;
}

}  // namespace

TEST(PlanCli, MillionTokenJson) {
  const auto r = plan("--model llama3-405b --tokens 1048576 --gpus 128 --gpus-per-node 8 "
                      "--hardware h100 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["best"]["strategy"], "tp+ring");
  EXPECT_NEAR(j["best"]["seconds"].get<double>(), 77.0, 0.2 * 77.0);
  // single (the local scheme), every other registered scheme, and tp+ring.
  EXPECT_EQ(j["strategies"].size(), tandem::parallel::scheme_registry().size() + 1);
}

TEST(PlanCli, TableForAGgufFile) {
  const auto r = plan("--model " + shared_path("models/tiny-f16.gguf") +
                      " --tokens 4096 --gpus 2 --hardware cpu-this --decode-tokens 64");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("weights fp16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("recommended:"), std::string::npos) << r.out;
  for (const char* s : {"single", "ring", "zigzag", "pass-q", "ulysses", "hybrid", "tp+ring"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
}

// A CPU device is a rank's threads (plan --threads): ranks whose threads outnumber the
// node's cores take turns on them, so two ranks of 4 threads on 4 cores take about twice
// as long as two of 2.
TEST(PlanCli, ThreadsPerDeviceOnACpuProfile) {
  const std::string path = temp_dir() + "/cpu4.json";
  std::ofstream(path) << R"({"name": "cpu4", "flops": {"f32": 1e11, "bf16": 1e11}, "efficiency": 0.5,
    "memory_bandwidth": 2e10, "memory_capacity": 1.6e10, "devices_per_node": 1, "threads": 4,
    "intra_node": {"bandwidth": 1e10, "latency": 1e-6},
    "inter_node": {"bandwidth": 1e9, "latency": 1e-5}})";
  auto ring = [&](const std::string& threads) {
    const auto r = plan("--model " + shared_path("models/tiny-f16.gguf") + " --tokens 2048 --gpus 2 " +
                        "--gpus-per-node 2 --hardware " + path + " --json --threads " + threads);
    EXPECT_EQ(r.code, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    for (const auto& s : j["strategies"])
      if (s["strategy"] == "ring") {
        EXPECT_NE(s["layout"].get<std::string>().find(threads + " threads"), std::string::npos) << s;
        return s["compute_seconds"].get<double>();
      }
    ADD_FAILURE() << "no ring: " << r.out;
    return 0.0;
  };
  EXPECT_NEAR(ring("4") / ring("2"), 2.0, 0.2);
  expect_bad("--model llama3-8b --tokens 1024 --hardware h100 --threads 4", "--threads");
  expect_bad("--model llama3-8b --tokens 1024 --hardware " + path + " --threads 0", "--threads");
}

TEST(PlanCli, ProfileFile) {
  const std::string path = temp_dir() + "/profile.json";
  std::ofstream(path) << R"({"name": "lab", "flops": {"bf16": 1e14}, "efficiency": 0.5,
    "memory_bandwidth": 1e12, "memory_capacity": 4e10, "devices_per_node": 4,
    "intra_node": {"bandwidth": 1e11, "latency": 1e-6},
    "inter_node": {"bandwidth": 1e10, "latency": 1e-5}})";
  const auto r = plan("--model llama3-8b --tokens 32768 --gpus 8 --hardware " + path + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["hardware"]["name"], "lab");
  EXPECT_EQ(j["gpus_per_node"], 4);

  const std::string bad = temp_dir() + "/bad.json";
  std::ofstream(bad) << R"({"name": "lab", "flops": {"bf16": 1e14}, "efficiency": 0.5,
    "memory_bandwidth": "fast", "memory_capacity": 4e10,
    "intra_node": {"bandwidth": 1e11}, "inter_node": {"bandwidth": 1e10}})";
  expect_bad("--model llama3-8b --tokens 1024 --hardware " + bad, "memory_bandwidth");
}

// A profile without link figures (what calibrate writes where it cannot measure MPI)
// loads and plans one device; more devices are refused, naming what is missing.
TEST(PlanCli, ProfileWithoutLinksPlansOneDevice) {
  const std::string path = temp_dir() + "/no-links.json";
  std::ofstream(path) << R"({"name": "calibrated", "flops": {"f32": 1e11}, "efficiency": 0.5,
    "memory_bandwidth": 1e10, "memory_capacity": 4e9, "devices_per_node": 2,
    "activation_bytes": 4})";
  const auto r = plan("--model tiny --tokens 4096 --hardware " + path + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["best"]["strategy"], "single");
  expect_bad("--model tiny --tokens 4096 --gpus 2 --hardware " + path, "intra_node");
  // One link without the other is a malformed profile.
  const std::string half = temp_dir() + "/half-links.json";
  std::ofstream(half) << R"({"name": "x", "flops": {"f32": 1e11}, "efficiency": 0.5,
    "memory_bandwidth": 1e10, "memory_capacity": 4e9, "intra_node": {"bandwidth": 1e9}})";
  expect_bad("--model tiny --tokens 4096 --hardware " + half, "inter_node");
}

// --scheme predicts one configuration, as the full table predicts it; --sp-chunk sets the
// prefill's steps as the runtime's flag does (auto: its default bands).
TEST(PlanCli, OneSchemeAndItsChunk) {
  const std::string base = "--model " + shared_path("models/tiny-f16.gguf") +
                           " --tokens 4096 --gpus 4 --gpus-per-node 4 --hardware cpu-this --json";
  auto strategies = [&](const std::string& args) {
    const auto r = plan(base + args);
    EXPECT_EQ(r.code, 0) << r.out;
    return r.code == 0 ? nlohmann::json::parse(r.out)["strategies"] : nlohmann::json::array();
  };
  auto prefill_of = [](const nlohmann::json& all, const std::string& name) {
    for (const auto& s : all)
      if (s["strategy"] == name) return s["prefill_seconds"].get<double>();
    ADD_FAILURE() << "no " << name << " in " << all;
    return 0.0;
  };
  const auto all = strategies("");
  const auto ring = strategies(" --scheme ring");
  ASSERT_EQ(ring.size(), 1u) << ring;
  EXPECT_DOUBLE_EQ(prefill_of(ring, "ring"), prefill_of(all, "ring"));
  const auto hybrid = strategies(" --scheme hybrid:2x2");
  ASSERT_EQ(hybrid.size(), 1u) << hybrid;
  EXPECT_EQ(hybrid[0]["layout"].get<std::string>().rfind("ulysses 2 x ring 2", 0), 0u) << hybrid;
  // Contiguous ring shards in bands of 4 x 128 tokens balance the causal work that whole
  // shards leave to the last rank.
  EXPECT_LT(prefill_of(strategies(" --scheme ring --sp-chunk auto"), "ring"),
            0.8 * prefill_of(ring, "ring"));
  EXPECT_DOUBLE_EQ(prefill_of(strategies(" --scheme ring --sp-chunk 0"), "ring"), prefill_of(ring, "ring"));
  expect_bad(base + " --scheme tree", "--scheme");
  expect_bad(base + " --scheme hybrid:3x2", "--scheme");
  expect_bad(base + " --sp-chunk -3", "--sp-chunk");
  expect_bad(base + " --sp-chunk lots", "--sp-chunk");
}

TEST(PlanCli, BadFlags) {
  expect_bad("--model llama3-8b --tokens 1024 --hardware tpu9", "--hardware");
  expect_bad("--model llama3-8b --tokens 1024 --gpus 12 --gpus-per-node 8", "--gpus");
  expect_bad("--model llama3-8b --tokens 0", "--tokens");
  expect_bad("--model llama9-1t --tokens 1024", "--model");
  expect_bad("--model llama3-8b --tokens 1024 --dtype int3", "--dtype");
  expect_bad("--model llama3-8b --tokens 1024 --gpus 0", "--gpus");
  expect_bad("--model llama3-8b --tokens 1024 --gpus 8 --gpus-per-node 0", "--gpus-per-node");
  expect_bad("--tokens 1024", "--model");
}
