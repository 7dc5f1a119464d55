// `tandem compare` end to end at tiny sizes: exit 0, results.json with every run, the
// plots and index.html; bad flags exit 2 naming the flag.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/test_paths.hpp"

using tandem::test::run;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

using tandem::test::read_text;

namespace {

void expect_bad(const std::string& args, const std::string& needle) {
  SCOPED_TRACE("tandem compare " + args);
  const auto r = run(tandem_bin() + " compare " + args + " --out " + temp_dir() + "/bad");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << r.out;
}

}  // namespace

TEST(CompareCli, TinyEndToEnd) {
  const std::string out = temp_dir() + "/report";
  const auto r = run(tandem_bin() + " compare --lengths 64,128 --ranks 2 --schemes ring " +
                     "--decode-tokens 4 -t 1 --rounds 2 --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  // Progress, the table and the crossover sentence.
  EXPECT_NE(r.out.find("[1/6] naive N=64"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ring P=2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("P > 1 runs use"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("single optimized pipeline"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("slow core: the slowest core's speed"), std::string::npos) << r.out;

  EXPECT_NE(r.out.find("round 2/2 [6/6] ring P=2 N=128"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(read_text(out + "/results.json"));
  ASSERT_EQ(j["runs"].size(), 6u);
  EXPECT_EQ(j["rounds"], 2);
  std::vector<std::string> want = {"naive", "single", "ring P=2"};
  for (size_t i = 0; i < 6; ++i) {
    const auto& x = j["runs"][i];
    SCOPED_TRACE(x.dump());
    EXPECT_EQ(x["label"], want[i % 3]);
    EXPECT_EQ(x["tokens"], i < 3 ? 64 : 128);
    ASSERT_TRUE(x["ok"].get<bool>());
    EXPECT_GT(x["prefill_seconds"].get<double>(), 0);
    EXPECT_TRUE(x["decode_tokens_per_s"].is_number());
    EXPECT_EQ(x["per_rank"].size(), want[i % 3] == "ring P=2" ? 2u : 1u);
    EXPECT_GT(x["weights_bytes_per_rank"].get<double>(), 0);
    EXPECT_EQ(x["predicted"].is_null(), want[i % 3] == "naive");
    // Every optimized run records a trace (the loop over traces below checks them).
    EXPECT_EQ(x["trace"].is_string(), want[i % 3] != "naive");
    if (want[i % 3] == "ring P=2") {
      EXPECT_GT(x["bytes_sent_per_rank"].get<double>(), 0);
    }
    // Two rounds, the row the faster of each (the median of two).
    ASSERT_EQ(x["rounds"].size(), 2u);
    const auto& pr = x["rounds"][x["prefill_round"].get<size_t>()];
    EXPECT_EQ(pr["prefill_seconds"], x["prefill_seconds"]);
    for (const auto& other : x["rounds"]) EXPECT_LE(x["prefill_seconds"], other["prefill_seconds"]);
    const auto& dr = x["rounds"][x["decode_round"].get<size_t>()];
    EXPECT_EQ(dr["decode_tokens_per_s"], x["decode_tokens_per_s"]);
    for (const auto& other : x["rounds"]) EXPECT_GE(x["decode_tokens_per_s"], other["decode_tokens_per_s"]);
    if (!x["predicted"].is_null()) {  // the median of two rounds' predictions: the faster
      double prefill = 1e30, step = 1e30;
      for (const auto& other : x["rounds"]) {
        prefill = std::min(prefill, other["predicted_prefill_seconds"].get<double>());
        step = std::min(step, other["predicted_decode_seconds_per_token"].get<double>());
      }
      EXPECT_EQ(x["predicted"]["prefill_seconds"].get<double>(), prefill);
      EXPECT_EQ(x["predicted"]["decode_seconds_per_token"].get<double>(), step);
    }
    // Each core's speed around every optimized run.
    if (want[i % 3] == "naive") {
      EXPECT_FALSE(x.contains("core_rates"));
    } else {
      ASSERT_TRUE(x.contains("core_rates"));
      ASSERT_EQ(x["core_rates"].size(), j["cores"].get<size_t>());
      for (const auto& c : x["core_rates"])
        for (const char* k : {"product", "attention", "stream"}) {
          EXPECT_GT(c.at(k).get<double>(), 1e8) << k;
          EXPECT_GT(c.at("busy").at(k).get<double>(), 1e8) << "busy " << k;  // every core at once
        }
    }
  }
  // KV per rank halves with two ranks.
  EXPECT_LT(j["runs"][5]["per_rank"][0]["kv_bytes"].get<double>(),
            j["runs"][4]["per_rank"][0]["kv_bytes"].get<double>());
  for (const char* f : {"latency.svg", "memory.svg", "time_split.svg", "decode.svg", "index.html"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + f)) << f;
  const auto html = read_text(out + "/index.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  // The rows' traces only: the other round's are removed.
  size_t traces = 0;
  for ([[maybe_unused]] const auto& f : std::filesystem::directory_iterator(out + "/traces")) ++traces;
  EXPECT_EQ(traces, 4u);
  for (const auto& x : j["runs"])
    if (x["trace"].is_string()) {
      const auto trace = nlohmann::json::parse(read_text(out + "/" + x["trace"].get<std::string>()));
      EXPECT_FALSE(trace.empty());
      EXPECT_NE(html.find(x["trace"].get<std::string>()), std::string::npos);
    }
}

TEST(CompareCli, BadFlags) {
  expect_bad("--lengths 64,abc", "--lengths");
  expect_bad("--lengths 0", "--lengths");
  expect_bad("--ranks 1", "--ranks");
  expect_bad("--schemes ring,warp", "--schemes");
  expect_bad("--schemes hybrid:2y2", "--schemes");
  expect_bad("--decode-tokens -1", "--decode-tokens");
  expect_bad("--hardware no-such-profile", "--hardware");
  expect_bad("--launcher carrier-pigeon", "--launcher");
  expect_bad("-m /no/such/model.gguf", "model");
  expect_bad("--frobnicate", "frobnicate");
  expect_bad("--rounds 0", "--rounds");
  expect_bad("--train --rounds 2", "--rounds");
}
