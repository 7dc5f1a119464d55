// End-to-end runs of the tandem program on the shipped tiny model.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <algorithm>
#include <nlohmann/json.hpp>

#include "support/test_paths.hpp"

using tandem::test::run;
using tandem::test::shared_path;
using tandem::test::tandem_bin;

namespace {
const char* kText = "Once upon a time, there was a little girl named Lily.";
const char* kIds = "1 9038 2501 263 931 29892 727 471 263 2217 7826 4257 365 2354 29889";

std::string tiny() { return shared_path("models/tiny-f16.gguf"); }

std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> v;
  float x;
  while (in.read(reinterpret_cast<char*>(&x), sizeof x)) v.push_back(x);
  return v;
}
}  // namespace

TEST(Cli, TokenizeMatchesReferencePromptIds) {
  const auto r = run(tandem_bin() + " tokenize -m " + tiny() + " -p '" + kText + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, std::string(kIds) + "\n");
  // Vocabulary-only files work too.
  const auto v = run(tandem_bin() + " tokenize -m " + shared_path("vocab/ggml-vocab-llama-spm.gguf") +
                     " --no-bos -p '" + kText + "'");
  ASSERT_EQ(v.code, 0) << v.out;
  EXPECT_EQ(v.out, std::string(kIds).substr(2) + "\n");
}

TEST(Cli, GreedyGenerateReproducesReferenceTokens) {
  const auto r = run("{ " + tandem_bin() + " generate -m " + tiny() + " -p '" + kText +
                     "' -n 32 --temp 0 --show-ids -t 2 2>/dev/null; }");
  ASSERT_EQ(r.code, 0) << r.out;
  // Reference greedy ids (all margins > 4e-3 in the reference run).
  const std::string expect =
      "7278 2984 5085 7278 7995 7278 7995 7995 7995 7995 7995 7995 7995 7995 7995 7995 7995 "
      "7995 7995 7995 7995 7995 7995 7995 7995 7995 7995 7995 7995 7995 7995 7995";
  std::istringstream ss(r.out.substr(r.out.find(kText) + std::string(kText).size()));
  std::string got, id;
  while (ss >> id) got += (got.empty() ? "" : " ") + id;
  EXPECT_EQ(got, expect);
}

TEST(Cli, GenerateReportsSpeeds) {
  const auto r = run(tandem_bin() + " generate -m " + tiny() + " -p 'Hello' -n 4 --seed 1 -t 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("prompt:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("time to first token"), std::string::npos) << r.out;
  // --json: each decode step's time, adding up to the decode time.
  const auto j = run(tandem_bin() + " generate -m " + tiny() + " -p 'Hello' -n 5 --seed 1 -t 1 --json");
  ASSERT_EQ(j.code, 0) << j.out;
  const auto doc = nlohmann::json::parse(j.out.substr(j.out.find('{')));
  const auto steps = doc.at("decode_step_seconds").get<std::vector<double>>();
  EXPECT_EQ(int64_t(steps.size()), doc.at("decode_steps").get<int64_t>());
  double sum = 0;
  for (double x : steps) sum += x;
  EXPECT_NEAR(sum, doc.at("decode_seconds").get<double>(), 1e-9);
}

TEST(Cli, LogitsFileMatchesReference) {
  std::string ids(kIds);
  for (auto& c : ids)
    if (c == ' ') c = ',';
  const std::string out = tandem::test::temp_dir() + "/logits.f32";
  const auto r = run(tandem_bin() + " logits -m " + tiny() + " --ids " + ids + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("top5 of position 14: 7278:"), std::string::npos) << r.out;
  const auto got = read_f32(out);
  const auto ref = read_f32(shared_path("models/reference/tiny-f16.ids15.kvf32.fa0.prompt_logits.f32"));
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], ref[i], 2e-3) << i;

  const auto last = run(tandem_bin() + " logits -m " + tiny() + " --ids " + ids + " --last 2 --out " + out);
  ASSERT_EQ(last.code, 0) << last.out;
  const auto tail = read_f32(out);
  ASSERT_EQ(tail.size(), 2u * 32000u);
  for (size_t i = 0; i < tail.size(); ++i) ASSERT_NEAR(tail[i], ref[13 * 32000 + i], 2e-3);
}

TEST(Cli, InfoListsMetadataAndTensors) {
  const auto r = run(tandem_bin() + " info -m " + tiny());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("llama.embedding_length"), std::string::npos);
  EXPECT_NE(r.out.find("blk.5.ffn_down.weight"), std::string::npos);
  EXPECT_NE(r.out.find("D=288 L=6 H=6 G=6 d=48"), std::string::npos) << r.out;
}

TEST(Cli, MemoryBudgetTooSmallIsRefusedBeforeAnyWork) {
  const auto r = run(tandem_bin() + " prefill -m " + tiny() + " --random-tokens 4096 -t 1 --max-memory 60M");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("needs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--max-memory is 60.0 MiB"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("prefill of"), std::string::npos) << r.out;  // no report: no work done
  const auto bad = run(tandem_bin() + " prefill -m " + tiny() + " --random-tokens 8 --max-memory 12Q");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("--max-memory"), std::string::npos) << bad.out;
}

TEST(Cli, ModelTruncatedWhileInUseGivesAClearError) {
  const std::string copy = tandem::test::temp_dir() + "/shrinking.gguf";
  ASSERT_EQ(run("cp " + tiny() + " " + copy).code, 0);
  // Generate for long enough, then cut the file to 1 MiB under the running process once
  // it has printed its first token (model loaded, decoding; waits up to 60 s for that, not
  // a fixed delay that a loaded machine can outlast before the load).
  const auto r = run("bash -c '" + tandem_bin() + " generate -m " + copy +
                     " --ids 1,2,3 -n 100000 --temp 0 -t 1 --show-ids > " + copy + ".out 2> " +
                     copy + ".err & pid=$!; for i in $(seq 600); do [ -s " + copy +
                     ".out ] && break; sleep 0.1; done; kill -0 $pid && echo running; "
                     "truncate -s 1M " + copy + "; wait $pid; echo rc=$?; cat " + copy + ".err'");
  EXPECT_NE(r.out.find("running\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rc=2"), std::string::npos) << r.out;
  // The matrices are copied at load, so the lost pages may be touched (the embedding's
  // row: SIGBUS) or the per-step check may see the new size first: one clear error.
  EXPECT_TRUE(r.out.find("truncated while in use") != std::string::npos ||
              r.out.find("changed size while in use") != std::string::npos)
      << r.out;
}

// --parallel N: sequence i is what a single run with seed + i generates, the prompt's
// full KV pages are shared, and a contiguous cache (--kv-page 0) is refused.
TEST(Cli, GenerateParallelSequencesEqualSingleRunsAndSharePages) {
  std::string prompt;
  for (int i = 0; i < 6; ++i) prompt += std::string(i ? " " : "") + kText;  // 85 tokens
  const std::string base = tandem_bin() + " generate -m " + tiny() + " -p '" + prompt +
                           "' -n 12 --show-ids -t 2 --kv-page 16";
  const auto par = run(base + " --parallel 3 --seed 40");
  ASSERT_EQ(par.code, 0) << par.out;
  for (int i = 0; i < 3; ++i) {
    const auto one = run("{ " + base + " --seed " + std::to_string(40 + i) + " 2>/dev/null; }");
    ASSERT_EQ(one.code, 0) << one.out;
    const std::string ids = one.out.substr(one.out.find(kText, prompt.size() - 60) +
                                           std::string(kText).size());
    const std::string head = "[sequence " + std::to_string(i) + ", seed " + std::to_string(40 + i) + "]\n";
    const size_t at = par.out.find(head);
    ASSERT_NE(at, std::string::npos) << par.out;
    const std::string line = par.out.substr(at + head.size(), par.out.find('\n', at + head.size()) - at - head.size());
    auto words = [](const std::string& s) {
      std::istringstream ss(s);
      std::string w, all;
      while (ss >> w) all += w + " ";
      return all;
    };
    EXPECT_EQ(words(line), words(ids)) << "sequence " << i;
    EXPECT_EQ(words(line).size() > 12, true);
  }
  // 85 prompt tokens = 5 full pages of 16, shared by all three.
  EXPECT_NE(par.out.find("(5 shared)"), std::string::npos) << par.out;
  const auto bad = run(base + " --parallel 2 --kv-page 0");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("--kv-page"), std::string::npos) << bad.out;
}

// prefill --warmup W --repeat R: the report is the median timed run's, with every timed
// run's seconds beside it and the process's first prefill (a warm-up one here).
TEST(Cli, PrefillRepeatsReportTheMedianRun) {
  const auto r = run(tandem_bin() + " prefill -m " + tiny() +
                     " --random-tokens 64 -t 1 --warmup 1 --repeat 5 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j.at("warmup").get<int>(), 1);
  auto each = j.at("seconds_each").get<std::vector<double>>();
  ASSERT_EQ(each.size(), 5u);
  std::sort(each.begin(), each.end());
  EXPECT_DOUBLE_EQ(j.at("seconds").get<double>(), each[2]);
  EXPECT_DOUBLE_EQ(j.at("per_rank").at(0).at("seconds").get<double>(), each[2]);
  EXPECT_GT(j.at("first_seconds").get<double>(), 0);
  // One prefill: no repeat fields.
  const auto one = run(tandem_bin() + " prefill -m " + tiny() + " --random-tokens 64 -t 1 --json");
  ASSERT_EQ(one.code, 0) << one.out;
  EXPECT_FALSE(nlohmann::json::parse(one.out.substr(one.out.find('{'))).contains("seconds_each"));
  const auto bad = run(tandem_bin() + " prefill -m " + tiny() + " --random-tokens 64 --repeat 0");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("--repeat"), std::string::npos) << bad.out;
}
