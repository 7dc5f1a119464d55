// `tandem compare --train` end to end at tiny sizes under real mpirun: every training
// scheme runs next to one rank, trains the same model (the same losses), holds half the
// activations per rank at P = 2, and the report has its files. Plus the log reader.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "support/test_paths.hpp"
#include "tandem/analysis/compare_train.hpp"
#include "tandem/core/error.hpp"

using tandem::test::read_text;
using tandem::test::run;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

TEST(CompareTrain, EveryTrainingSchemeNextToOneRank) {
  const std::string out = temp_dir() + "/report";
  const auto r = run(tandem_bin() + " compare --train --lengths 48,96 --ranks 2 --train-steps 3 --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("trains faster than one rank"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Skipped: pass-q at P=2"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(read_text(out + "/train.json"));
  std::map<std::string, int> seen;
  for (const auto& run : j.at("runs")) {
    SCOPED_TRACE(run.dump());
    ASSERT_TRUE(run.at("ok").get<bool>());
    seen[run.at("label").get<std::string>()]++;
    EXPECT_EQ(run.at("losses").size(), 3u);
    EXPECT_GT(run.at("step_seconds").get<double>(), 0.0);
    EXPECT_GT(run.at("peak_rss_bytes").get<double>(), 0.0);
    if (run.at("ranks").get<int>() == 1) continue;
    EXPECT_LT(run.at("loss_difference").get<double>(), 1e-4);
    EXPECT_GT(run.at("attention_bytes_per_step").get<double>(), 0.0);
    EXPECT_GT(run.at("allreduce_bytes_per_step").get<double>(), 0.0);
    // Half the sequence per rank: half the planned activations of the one-rank run.
    for (const auto& one : j.at("runs"))
      if (one.at("ranks").get<int>() == 1 && one.at("ctx") == run.at("ctx"))
        EXPECT_NEAR(run.at("activation_bytes").get<double>() / one.at("activation_bytes").get<double>(), 0.5, 0.05);
  }
  for (const char* label : {"single", "ring P=2", "zigzag P=2", "ulysses P=2"}) EXPECT_EQ(seen[label], 2) << label;
  EXPECT_EQ(j.at("crossovers").size(), 3u);
  for (const char* f : {"train.html", "train_step.svg", "train_memory.svg"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + f)) << f;
}

TEST(CompareTrain, BadFlags) {
  const auto r = run(tandem_bin() + " compare --train --lengths 8 --out " + temp_dir() + "/bad");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--lengths"), std::string::npos) << r.out;
}

TEST(CompareTrainLog, TheFirstStepIsNotTimedAndTheMedianIsTaken) {
  tandem::analysis::TrainMeasurement m;
  m.ctx = 100;
  read_train_log(m,
                 "{\"step\":1,\"loss\":3,\"seconds\":9,\"peak_rss\":10,\"activation_bytes\":5}\n"
                 "{\"step\":2,\"loss\":2,\"seconds\":1,\"peak_rss\":30,\"attention_bytes\":7}\n"
                 "{\"step\":3,\"loss\":1,\"seconds\":3,\"peak_rss\":20,\"attention_bytes\":9}\n"
                 "{\"step\":4,\"loss\":1,\"seconds\":2,\"peak_rss\":20,\"attention_bytes\":8}\n",
                 "log");
  EXPECT_TRUE(m.ok);
  EXPECT_EQ(m.steps, 4);
  EXPECT_DOUBLE_EQ(m.step_seconds, 2.0);
  EXPECT_DOUBLE_EQ(m.tokens_per_s, 50.0);
  EXPECT_EQ(m.peak_rss, 30u);
  EXPECT_EQ(m.activation_bytes, 5u);
  EXPECT_EQ(m.attention_bytes, 8u);
  EXPECT_EQ(m.losses, (std::vector<double>{3, 2, 1, 1}));
}

TEST(CompareTrainLog, AMalformedLineIsNamed) {
  tandem::analysis::TrainMeasurement m;
  try {
    read_train_log(m, "{\"step\":1,\"loss\":3,\"seconds\":9}\n{\"step\":2,\"loss\"\n", "runs/x.jsonl");
    FAIL() << "accepted a malformed line";
  } catch (const tandem::Error& e) {
    EXPECT_NE(std::string(e.what()).find("runs/x.jsonl: line 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_train_log(m, "", "empty.jsonl"), tandem::Error);
}
