// tandem calibrate writes a profile that tandem plan accepts, with measured figures and
// curves, the MPI links' included.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/test_paths.hpp"

using tandem::test::run;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

TEST(Calibrate, WritesAProfileThatPlanUses) {
  const std::string prof = temp_dir() + "/prof.json";
  const auto r = run(tandem_bin() + " calibrate -t 1 --types f32,q8_0 -o " + prof);
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(prof);
  const auto j = nlohmann::json::parse(in);
  EXPECT_GT(j.at("flops").at("f32").get<double>(), 1e9);
  EXPECT_GT(j.at("memory_bandwidth").get<double>(), 1e8);
  EXPECT_GT(j.at("efficiency").get<double>(), 0.0);
  EXPECT_LE(j.at("efficiency").get<double>(), 1.0);
  EXPECT_GT(j.at("intra_node").at("bandwidth").get<double>(), 1e6);
  EXPECT_GT(j.at("inter_node").at("latency").get<double>(), 0.0);
  const auto& cv = j.at("curves");
  for (const char* k : {"intra_message", "inter_message", "intra_alltoall", "inter_alltoall"}) {
    ASSERT_TRUE(cv.contains(k)) << k << "\n" << r.out;
    for (const auto& v : cv.at(k).at("values")) EXPECT_GT(v.get<double>(), 0) << k;
  }
  EXPECT_TRUE(cv.at("matmul").contains("q8_0"));
  const auto p = run(tandem_bin() + " plan --model tiny --tokens 4096 --gpus 2 --gpus-per-node 2 --hardware " + prof + " --json");
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_TRUE(nlohmann::json::parse(p.out).contains("best"));
}
