// comm_mpi_check: runs the shared communicator checks on the MPI world (start it with
// mpirun). Prints "mpi_check ok rank R" and exits 0, or prints the error and exits
// non-zero (the Error's exit code, 4 for communication errors; 1 for a mismatch).
// Fault injection, at the allreduce step:
//   --die-rank R        rank R kills itself with SIGKILL
//   --stall-rank R      rank R sleeps --stall-seconds (default 60) first
//   --timeout S         communicator timeout in seconds
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "comm/comm_checks.hpp"
#include "tandem/comm/mpi.hpp"
#include "tandem/core/error.hpp"

namespace {

// For the SIGTERM handler: what this rank was doing when mpirun ended the job.
char g_rank_text[32] = "?";
std::atomic<const char*> g_step{"startup"};

void on_term(int sig) {
  auto put = [](const char* s) { (void)!write(2, s, std::strlen(s)); };
  put("mpi_check rank ");
  put(g_rank_text);
  put(": terminated by signal ");
  put(sig == SIGTERM ? "SIGTERM" : "SIGINT");
  put(" during ");
  put(g_step.load());
  put("\n");
  _exit(128 + sig);
}

struct Options {
  int die_rank = -1, stall_rank = -1;
  double stall_seconds = 60, timeout = 0;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) tandem::bad_input("mpi_check: {} needs a value", a);
    const char* v = argv[++i];
    if (a == "--die-rank") o.die_rank = std::atoi(v);
    else if (a == "--stall-rank") o.stall_rank = std::atoi(v);
    else if (a == "--stall-seconds") o.stall_seconds = std::atof(v);
    else if (a == "--timeout") o.timeout = std::atof(v);
    else tandem::bad_input("mpi_check: unknown flag {}", a);
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tandem::comm;
  std::signal(SIGTERM, on_term);
  std::signal(SIGINT, on_term);
  int rank = -1;
  try {
    auto world = mpi_world(&argc, &argv);
    rank = world->rank();
    std::snprintf(g_rank_text, sizeof g_rank_text, "%d", rank);
    const Options opt = parse(argc, argv);
    if (opt.timeout > 0) world->set_timeout(opt.timeout);
    for (const auto& check : checks::all_checks()) {
      g_step.store(check.name);
      if (std::strcmp(check.name, "allreduce") == 0) {
        if (rank == opt.die_rank) raise(SIGKILL);
        if (rank == opt.stall_rank)
          std::this_thread::sleep_for(std::chrono::duration<double>(opt.stall_seconds));
      }
      check.fn(*world);
    }
    g_step.store("final barrier");
    world->barrier();
    std::printf("mpi_check ok rank %d of %d (%s)\n", rank, world->size(),
                std::string(world->backend()).c_str());
    std::fflush(stdout);
    return 0;
  } catch (const tandem::Error& e) {
    std::fprintf(stderr, "mpi_check rank %d: error: %s\n", rank, e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_check rank %d: error: %s\n", rank, e.what());
    return 1;
  }
}
