// The training loop: the passkey data, learning, bit-identical resume, the log, the
// memory check and config errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "tandem/comm/in_process.hpp"
#include "tandem/core/error.hpp"
#include "tandem/train/data.hpp"
#include "tandem/train/trainer.hpp"
#include "train/train_specs.hpp"

namespace tandem::train {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("tandem_train_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p.string();
}

using test::tiny_passkey;
using test::train1;

TEST(Passkey, TheAnswerIsTheKeyAndOnlyTheAnswerCounts) {
  auto src = passkey_source(40, 5, false);
  std::set<std::vector<int32_t>> keys;
  for (int64_t i = 0; i < 50; ++i) {
    const Sequence s = src->get(i);
    ASSERT_EQ(s.tokens.size(), 40u);
    EXPECT_EQ(s.tokens[0], 0);
    const auto key_at = std::find(s.tokens.begin(), s.tokens.end(), 1) - s.tokens.begin();
    const int64_t query = 40 - kPasskeyDigits - 1;
    ASSERT_LT(key_at + kPasskeyDigits, query);
    EXPECT_EQ(s.tokens[size_t(query)], 2);
    EXPECT_EQ(std::count(s.tokens.begin(), s.tokens.end(), 1), 1);
    EXPECT_EQ(std::count(s.tokens.begin(), s.tokens.end(), 2), 1);
    std::vector<int32_t> key;
    for (int64_t j = 0; j < kPasskeyDigits; ++j) {
      const int32_t dgt = s.tokens[size_t(key_at + 1 + j)];
      EXPECT_GE(dgt, kPasskeyDigit0);
      EXPECT_LT(dgt, kPasskeyDigit0 + 10);
      EXPECT_EQ(s.tokens[size_t(query + 1 + j)], dgt);
      EXPECT_EQ(s.targets[size_t(query + j)], dgt);  // predicted from the token before it
      key.push_back(dgt);
    }
    keys.insert(key);
    EXPECT_EQ(std::count_if(s.targets.begin(), s.targets.end(), [](int32_t t) { return t >= 0; }),
              kPasskeyDigits);
    // Filler never uses the markers or digits.
    for (int64_t j = 1; j < 40; ++j)
      if (j != key_at && j != query && !(j > key_at && j <= key_at + kPasskeyDigits) && j <= query) {
        EXPECT_GE(s.tokens[size_t(j)], kPasskeyDigit0 + 10) << j;
      }
  }
  EXPECT_GT(keys.size(), 45u);  // the keys are drawn, not repeated
  // The same index gives the same sequence; the held-out stream differs.
  EXPECT_EQ(src->get(3).tokens, passkey_source(40, 5, false)->get(3).tokens);
  EXPECT_NE(src->get(3).tokens, passkey_source(40, 5, true)->get(3).tokens);
}

TEST(Trainer, LearnsThatTheAnswerIsDigits) {
  // The answer's loss starts near ln 64 (uniform over the task's vocabulary); a model that
  // learns the answers are digits gets below ln 10 + 1 within a few dozen steps.
  TrainConfig c = tiny_passkey(40);
  const TrainSummary s = train1(c);
  ASSERT_EQ(s.steps.size(), 40u);
  EXPECT_GT(s.steps.front().loss, 3.5);
  double tail = 0;
  for (size_t i = 35; i < 40; ++i) tail += s.steps[i].loss / 5.0;
  EXPECT_LT(tail, std::log(10.0) + 0.5) << "first " << s.steps.front().loss;
  ASSERT_EQ(s.evals.size(), 1u);
  EXPECT_LT(s.evals[0].loss, std::log(10.0) + 0.5);
}

TEST(Trainer, ResumeContinuesBitIdentically) {
  const std::string a = temp_dir("a"), b = temp_dir("b");
  TrainConfig c = tiny_passkey(6);
  c.out_dir = a;
  const TrainSummary full = train1(c);
  c.out_dir = b;
  c.stop_after = 3;
  const TrainSummary first = train1(c);
  ASSERT_EQ(first.steps.size(), 3u);
  TrainConfig r;
  r.resume_dir = b;
  r.threads = 2;
  r.quiet = true;
  r.eval_examples = 8;
  const TrainSummary rest = train1(r);
  ASSERT_EQ(rest.first_step, 4);
  ASSERT_EQ(rest.steps.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(first.steps[size_t(i)].loss, full.steps[size_t(i)].loss) << i;
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(rest.steps[size_t(i)].loss, full.steps[size_t(i + 3)].loss) << "step " << i + 4;
  // log.jsonl: one object per step with the documented fields, steps 1..6 in order.
  std::ifstream in(b + "/log.jsonl");
  std::string line;
  int64_t expect = 1;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.at("step").get<int64_t>(), expect++);
    for (const char* k : {"loss", "tokens_per_s", "lr"}) EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(expect, 7);
  // The final checkpoints of the two runs are the same bytes.
  auto bytes = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  EXPECT_EQ(bytes(a + "/checkpoint.gguf"), bytes(b + "/checkpoint.gguf"));
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(Trainer, ResumeRefusesAnInterruptedCheckpoint) {
  const std::string dir = temp_dir("torn");
  TrainConfig c = tiny_passkey(2);
  c.out_dir = dir;
  train1(c);
  // A kill between the optimizer's write and the state's leaves files of different steps.
  std::ofstream(dir + "/optimizer.bin", std::ios::app) << "x";
  TrainConfig r;
  r.resume_dir = dir;
  r.quiet = true;
  try {
    train1(r);
    FAIL() << "resumed from a torn checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer.bin"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Trainer, MaxMemoryRefusesBeforeStepOne) {
  TrainConfig c = tiny_passkey(1);
  c.ctx = 4096;
  c.max_memory = 64ull << 20;
  try {
    train1(c);
    FAIL() << "not refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Resource);
    const std::string m = e.what();
    EXPECT_NE(m.find("--max-memory"), std::string::npos) << m;
    EXPECT_NE(m.find("needs"), std::string::npos) << m;
  }
  // Checkpointing the layers needs less: the estimate says so.
  const SynthSpec spec = config_spec(c);
  // The check counts the parameter set's floats without making one.
  EXPECT_EQ(ParamSet::floats_of(spec), ParamSet(spec).size());
  EXPECT_LT(activation_bytes(spec, 4096, true), activation_bytes(spec, 4096, false) / 2);
}

TEST(Trainer, BadConfigsNameTheFlag) {
  auto msg = [](TrainConfig c) {
    try {
      check_config(c, 1);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  TrainConfig c = tiny_passkey(1);
  EXPECT_EQ(msg(c), "");
  TrainConfig t = c;
  t.task = "copy";
  EXPECT_NE(msg(t).find("--task copy"), std::string::npos);
  t = c;
  t.data_path = "x.txt";
  EXPECT_NE(msg(t).find("exactly one of --data"), std::string::npos);
  t = c;
  t.sp = "bogus";
  EXPECT_NE(msg(t).find("--sp"), std::string::npos);
  t = c;
  t.batch = 0;
  EXPECT_NE(msg(t).find("--batch 0"), std::string::npos);
  t = c;
  t.dp = 3;
  EXPECT_NE(msg(t).find("--dp 3"), std::string::npos);
}

}  // namespace
}  // namespace tandem::train
