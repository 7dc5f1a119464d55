// The memory per rank tandem train checks --max-memory against, held to the process's
// measured peak resident set: one rank, and zigzag and ulysses on 2 ranks under mpirun.
// And --max-memory's answer: the longest --ctx it names fits, a longer one is refused.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "support/test_paths.hpp"

using tandem::test::mpirun;
using tandem::test::run;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

const std::string kArgs = " train --preset tiny --task passkey --ctx 4096 --batch 1 --steps 1 "
                          "--eval-examples 1 -t 1 -q";

void expect_needed_matches_peak(const std::string& launch, const std::string& sp) {
  SCOPED_TRACE(sp);
  const std::string log = temp_dir() + "/log.jsonl";
  const auto r = run(launch + tandem_bin() + kArgs + sp + " --log " + log);
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(log);
  const auto j = nlohmann::json::parse(in);
  const double needed = j.at("needed_bytes").get<double>(), peak = j.at("peak_rss").get<double>();
  std::printf("%s: needed %.1f MiB, peak RSS %.1f MiB (%.3f)\n", sp.empty() ? "one rank" : sp.c_str(),
              needed / 1048576, peak / 1048576, peak / needed);
  EXPECT_LE(peak, 1.03 * needed);
  EXPECT_GE(peak, 0.95 * needed);
}

}  // namespace

TEST(MpiTrainMemory, NeededIsThePeakResidentSetOfOneRank) { expect_needed_matches_peak("", ""); }

TEST(MpiTrainMemory, NeededIsThePeakResidentSetOfZigzagRanks) {
  expect_needed_matches_peak(mpirun(2), " --sp zigzag");
}

TEST(MpiTrainMemory, NeededIsThePeakResidentSetOfUlyssesRanks) {
  expect_needed_matches_peak(mpirun(2), " --sp ulysses");
}

TEST(MpiTrainMemory, TheLongestContextNamedFitsAndALongerOneIsRefused) {
  const std::string base = mpirun(2) + tandem_bin() +
                           " train --preset tiny --task passkey --batch 1 -t 1 --sp zigzag "
                           "--max-memory 300M --dry-run --ctx ";
  const auto r = run(base + "100000");
  EXPECT_EQ(r.code, 3) << r.out;  // a resource error
  EXPECT_NE(r.out.find("--max-memory 300.0 MiB: training at --ctx 100000 on 2 sp rank(s) needs"),
            std::string::npos) << r.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("the longest --ctx that fits is ([0-9]+)"))) << r.out;
  const int64_t longest = std::stoll(m[1]);
  EXPECT_GT(longest, 1000);
  // Within it by a margin, and past it (the process baseline, part of the figure, varies
  // by some KiB between runs).
  const auto fits = run(base + std::to_string(longest - 64));
  EXPECT_EQ(fits.code, 0) << fits.out;
  EXPECT_NE(fits.out.find("within --max-memory 300.0 MiB"), std::string::npos) << fits.out;
  const auto over = run(base + std::to_string(longest + 64));
  EXPECT_EQ(over.code, 3) << over.out;
}
