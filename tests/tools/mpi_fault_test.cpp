// A rank killed with SIGKILL in the middle of a sequence-parallel run: the job must end
// with a non-zero exit and a message naming the rank, well within 30 s.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/test_paths.hpp"

using tandem::test::run;
using tandem::test::shared_path;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

// Sanitizer builds (scripts/sanitize.sh) run tandem several times slower: start-up takes
// longer (a kill 2 s after start could land in the start-up barrier) and the computation
// a survivor finishes before it next waits (where its timeout starts) too. Their delays and
// bounds are scaled; a normal build keeps the 30 s.
constexpr double kSlowdown = tandem::test::kSanitized ? 4.0 : 1.0;
constexpr double kBound = 30.0 * kSlowdown;  // seconds from the fault to the end of the job

// Starts `args` under mpirun -np 3 in the background, waits (up to 30 s) until all three
// tandem ranks of this job (children of its mpirun: tests of this file may run at the same
// time under ctest -j) are running, SIGKILLs the newest one `delay` seconds later, and returns
// mpirun's exit code, output and the seconds from the kill to the end of the job. The
// runs take tens of seconds on this machine (30000 tokens on 3 ranks), so the kill lands
// in the middle of the run, never before it started or after it ended.
struct FaultResult {
  int code;
  std::string out;
  double seconds_after_kill;
};

// With `wait_file`, the delay starts when that file exists (up to 60 s after the start).
FaultResult kill_one_rank(const std::string& args, double delay, const std::string& signal = "-9",
                          const std::string& env = "", const std::string& wait_file = "") {
  const std::string log = temp_dir() + "/fault.log";
  const std::string script =
      env + "timeout " + std::to_string(int(90 * kSlowdown)) + " mpirun --allow-run-as-root --oversubscribe --bind-to none -np 3 " + tandem_bin() +
      args + " > " + log + " 2>&1 & job=$!; pat='^" + tandem_bin() + " " +
      args.substr(1, args.find(' ', 1) - 1) +
      "'; for i in $(seq 300); do mp=$(pgrep -P $job); [ -n \"$mp\" ] && "
      "[ \"$(pgrep -P $mp -f -c \"$pat\")\" -ge 3 ] && break; sleep 0.1; "
      "done; " +
      (wait_file.empty() ? std::string()
                         : "for i in $(seq 600); do [ -e " + wait_file + " ] && break; sleep 0.1; done; ") +
      "sleep " + std::to_string(delay * kSlowdown) +
      "; victim=$(pgrep -P $mp -f -n \"$pat\"); [ -n \"$victim\" ] && kill " + signal +
      " $victim; t0=$(date +%s%N); wait $job; rc=$?; "
      "t1=$(date +%s%N); echo \"rc=$rc elapsed_ms=$(( (t1 - t0) / 1000000 ))\"; cat " + log;
  const auto r = run("bash -c '" + [&] {
    std::string s;
    for (char c : script) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return s;
  }() + "'");
  FaultResult f{-1, r.out, 1e9};
  const auto rc = r.out.find("rc=");
  const auto el = r.out.find("elapsed_ms=");
  if (rc != std::string::npos) f.code = std::atoi(r.out.c_str() + rc + 3);
  if (el != std::string::npos) f.seconds_after_kill = std::atof(r.out.c_str() + el + 11) / 1000.0;
  return f;
}

}  // namespace

namespace {

// A rank SIGKILLed 2 s into a long prefill under `scheme`: the job ends, non-zero, soon.
void expect_killed_prefill_ends_the_job(const std::string& scheme) {
  const auto f = kill_one_rank(" prefill -m " + shared_path("models/tiny-f16.gguf") +
                                   " --random-tokens 30000 -t 1 --sp " + scheme,
                               2.0);
  EXPECT_NE(f.code, 0) << f.out;
  EXPECT_LT(f.seconds_after_kill, kBound) << f.out;
  // mpirun names the rank that died.
  EXPECT_NE(f.out.find("rank"), std::string::npos) << f.out;
  EXPECT_NE(f.out.find("signal 9"), std::string::npos) << f.out;
  // The survivors say which rank they were.
  EXPECT_NE(f.out.find("terminated by SIGTERM"), std::string::npos) << f.out;
  // The kill landed mid-run: no rank got as far as the report.
  EXPECT_EQ(f.out.find("tokens/s"), std::string::npos) << f.out;
  std::printf("%s: job ended %.2f s after the kill, exit %d\n", scheme.c_str(),
              f.seconds_after_kill, f.code);
}

// One rank frozen (SIGSTOP) 2 s into a long prefill, with a 3 s communication timeout.
FaultResult stall_one_rank_in_prefill(const std::string& scheme) {
  return kill_one_rank(" prefill -m " + shared_path("models/tiny-f16.gguf") +
                           " --random-tokens 30000 -t 1 --sp " + scheme,
                       2.0, "-STOP", "TANDEM_COMM_TIMEOUT=3 ");
}

}  // namespace

TEST(MpiFault, KilledRankDuringRingPrefillEndsTheJob) {
  expect_killed_prefill_ends_the_job("ring");
}

TEST(MpiFault, KilledRankDuringUlyssesPrefillEndsTheJob) {
  // Ulysses: every layer's attention is two all-to-alls over all ranks (6 heads, 2 per rank).
  expect_killed_prefill_ends_the_job("ulysses");
}

TEST(MpiFault, KilledRankDuringShardedDecodeEndsTheJob) {
  const auto f = kill_one_rank(" generate -m " + shared_path("models/tiny-f16.gguf") +
                                   " --ids 1,2,3,4,5,6,7,8 -n 200000 --temp 0 -t 1 --sp zigzag",
                               2.0);
  EXPECT_NE(f.code, 0) << f.out;
  EXPECT_LT(f.seconds_after_kill, kBound) << f.out;
  EXPECT_NE(f.out.find("signal 9"), std::string::npos) << f.out;
  std::printf("job ended %.2f s after the kill, exit %d\n", f.seconds_after_kill, f.code);
}

TEST(MpiFault, StalledRankMakesTheOthersTimeOutNamingTheOperation) {
  // SIGSTOP freezes one rank; with a 3 s communication timeout the others must fail with
  // a timeout that names the operation, and the job must end.
  const auto f = stall_one_rank_in_prefill("ring");
  EXPECT_NE(f.code, 0) << f.out;
  EXPECT_LT(f.seconds_after_kill, kBound) << f.out;
  EXPECT_NE(f.out.find("timed out after 3 s"), std::string::npos) << f.out;
  std::printf("job ended %.2f s after the stall, exit %d\n", f.seconds_after_kill, f.code);
}

TEST(MpiFault, StalledRankDuringUlyssesTimesOutNamingTheAllToAll) {
  const auto f = stall_one_rank_in_prefill("ulysses");
  EXPECT_EQ(f.code, 4) << f.out;  // the survivors' exit code: communication failure
  EXPECT_LT(f.seconds_after_kill, kBound) << f.out;
  EXPECT_NE(f.out.find("alltoallv (MPI_Ialltoallw) timed out after 3 s"), std::string::npos)
      << f.out;
  std::printf("job ended %.2f s after the stall, exit %d\n", f.seconds_after_kill, f.code);
}

TEST(MpiFault, KilledRankDuringTrainingEndsTheJobAndLeavesTheLastCheckpoint) {
  // zigzag training on 3 ranks, a checkpoint after every step; one rank killed 1.5 s after
  // the first checkpoint exists: the job ends, and the folder holds a complete checkpoint
  // (written by temp file + rename) that a one-rank run resumes from.
  const std::string dir = temp_dir() + "/run";
  const auto f = kill_one_rank(" train --preset tiny --task passkey --ctx 3000 --batch 1 --steps 1000 "
                               "--save-every 1 --eval-examples 1 -t 1 -q --sp zigzag --out " + dir,
                               1.5, "-9", "", dir + "/state.json");
  EXPECT_NE(f.code, 0) << f.out;
  EXPECT_LT(f.seconds_after_kill, kBound) << f.out;
  EXPECT_NE(f.out.find("signal 9"), std::string::npos) << f.out;
  std::ifstream state(dir + "/state.json");
  ASSERT_TRUE(state.good()) << f.out;
  const int64_t saved = nlohmann::json::parse(state).at("step").get<int64_t>();
  ASSERT_GE(saved, 1);
  EXPECT_LT(saved, 1000) << "the kill landed after the run";
  // The checkpoint loads as a model, and the run resumes from it.
  const auto info = run(tandem_bin() + " info -m " + dir + "/checkpoint.gguf");
  EXPECT_EQ(info.code, 0) << info.out;
  const auto r = run(tandem_bin() + " train --resume " + dir + " --stop-after " +
                     std::to_string(saved + 1) + " -t 2 -q");
  EXPECT_EQ(r.code, 0) << r.out;
  std::ifstream after(dir + "/state.json");
  EXPECT_EQ(nlohmann::json::parse(after).at("step").get<int64_t>(), saved + 1) << r.out;
  std::printf("job ended %.2f s after the kill, exit %d; resumed from step %lld\n", f.seconds_after_kill,
              f.code, static_cast<long long>(saved));
}
