// tandem train under a real mpirun: sequence-parallel and data-parallel training over MPI
// give the one-rank losses step by step, with the gradient's all-reduce overlapped with the
// backward (MPI_Iallreduce in pieces) or after it.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/test_paths.hpp"

using tandem::test::mpirun;
using tandem::test::run;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

std::vector<double> losses(const std::string& log) {
  std::ifstream in(log);
  std::vector<double> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line).at("loss").get<double>());
  return out;
}

const std::string kArgs = " train --preset tiny --task passkey --ctx 40 --batch 2 --steps 6 --lr 3e-3 "
                          "--warmup 2 --eval-examples 4 -t 1 -q";

TEST(MpiTrain, SequenceParallelRanksGiveTheOneRankLosses) {
  const std::string dir = temp_dir();
  const auto one = run(tandem_bin() + kArgs + " --out " + dir + "/one");
  ASSERT_EQ(one.code, 0) << one.out;
  const auto ref = losses(dir + "/one/log.jsonl");
  ASSERT_EQ(ref.size(), 6u);
  for (const char* sp : {"zigzag", "ring", "ulysses", "hybrid:1x2"}) {
    const std::string out = dir + "/" + sp;
    const auto r = run(mpirun(2) + tandem_bin() + kArgs + " --sp " + sp + " --out " + out);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto got = losses(out + "/log.jsonl");
    ASSERT_EQ(got.size(), ref.size()) << sp;
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-4) << sp << " step " << i + 1;
  }
}

TEST(MpiTrain, DataParallelRanksGiveTheOneRankLossesWithTheSumOverlappedOrNot) {
  // 3 ranks of one sequence each against one rank with the 3 sequences in its batch.
  const std::string dir = temp_dir();
  const std::string args = " train --preset tiny --task passkey --ctx 40 --steps 4 --lr 3e-3 "
                           "--warmup 2 --eval-examples 3 -t 1 -q";
  const auto one = run(tandem_bin() + args + " --batch 3 --out " + dir + "/one");
  ASSERT_EQ(one.code, 0) << one.out;
  const auto ref = losses(dir + "/one/log.jsonl");
  ASSERT_EQ(ref.size(), 4u);
  for (const char* mode : {"", " --no-overlap-reduce"}) {
    const std::string out = dir + "/dp" + (*mode ? "-after" : "-overlap");
    const auto r = run(mpirun(3) + tandem_bin() + args + " --batch 1 --dp 3" + mode + " --out " + out);
    ASSERT_EQ(r.code, 0) << r.out;
    const auto got = losses(out + "/log.jsonl");
    ASSERT_EQ(got.size(), ref.size()) << mode;
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-4) << mode << " step " << i + 1;
  }
}

}  // namespace
