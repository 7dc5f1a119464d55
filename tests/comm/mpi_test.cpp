// MPI backend under a real mpirun (label mpi): the shared checks for P = 1..4, chunked
// messages, a rank killed by SIGKILL and a stalled rank. Every mpirun runs under
// `timeout` so a hung job cannot hang the test.
#include <gtest/gtest.h>

#include <string>

#include "support/test_paths.hpp"
#include "tandem/core/timer.hpp"

#include <fmt/format.h>

namespace {

using tandem::test::RunResult;

bool have_mpi() { return std::string(TANDEM_MPI_CHECK).size() > 0; }

// Runs comm_mpi_check on P ranks; env: extra VAR=value words.
RunResult mpirun(int P, const std::string& args, const std::string& env = "") {
  const std::string cmd = fmt::format(
      "env OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 {} "
      "timeout -k 5 60 {} --allow-run-as-root --oversubscribe -np {} {} {}",
      env, TANDEM_MPIEXEC, P, TANDEM_MPI_CHECK, args);
  return tandem::test::run(cmd);
}

class Mpi : public ::testing::TestWithParam<int> {};

TEST_P(Mpi, AllChecksPass) {
  if (!have_mpi()) GTEST_SKIP() << "built without MPI";
  const int P = GetParam();
  RunResult r = mpirun(P, "");
  ASSERT_EQ(r.code, 0) << r.out;
  for (int rank = 0; rank < P; ++rank)
    EXPECT_NE(r.out.find(fmt::format("mpi_check ok rank {} of {} (mpi)", rank, P)),
              std::string::npos)
        << r.out;
}

INSTANTIATE_TEST_SUITE_P(P, Mpi, ::testing::Range(1, 5));

TEST(MpiChunks, SmallChunksTakeTheLargeMessagePaths) {
  if (!have_mpi()) GTEST_SKIP() << "built without MPI";
  // 64-byte chunks: messages in many MPI messages, alltoallv blocks of many pieces,
  // allgatherv over point-to-point, allreduce and broadcast in several native calls.
  RunResult r = mpirun(3, "", "TANDEM_MPI_CHUNK_BYTES=64");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("mpi_check ok rank 2 of 3"), std::string::npos) << r.out;
}

TEST(MpiFaults, KilledRankEndsTheJobQuickly) {
  if (!have_mpi()) GTEST_SKIP() << "built without MPI";
  tandem::Stopwatch sw;
  RunResult r = mpirun(3, "--die-rank 1 --timeout 20");
  const double seconds = sw.seconds();
  std::printf("[ measured ] job with a SIGKILLed rank ended after %.2f s (code %d)\n", seconds,
              r.code);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.code, 124) << "mpirun hung until `timeout` killed it\n" << r.out;
  EXPECT_LT(seconds, 30.0) << r.out;
  // mpirun names the dead rank; the survivors report what they were doing.
  EXPECT_NE(r.out.find("rank 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("signal 9"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("mpi_check ok"), std::string::npos) << r.out;
}

TEST(MpiFaults, StalledRankMakesTheOthersTimeOut) {
  if (!have_mpi()) GTEST_SKIP() << "built without MPI";
  tandem::Stopwatch sw;
  RunResult r = mpirun(3, "--stall-rank 1 --stall-seconds 60 --timeout 2");
  const double seconds = sw.seconds();
  std::printf("[ measured ] job with a stalled rank ended after %.2f s (code %d)\n", seconds,
              r.code);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.code, 124) << "mpirun hung until `timeout` killed it\n" << r.out;
  EXPECT_LT(seconds, 30.0) << r.out;
  EXPECT_NE(r.out.find("allreduce (MPI_Iallreduce) timed out after 2 s"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("mpi_check ok"), std::string::npos) << r.out;
}

}  // namespace
