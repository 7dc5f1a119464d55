#pragma once
// Options and process setup shared by the subcommands that can run sequence-parallel:
// under mpirun every process is one rank (MPI backend); without it, --ranks P runs P
// ranks as threads of this process (in-process backend).
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/scheme.hpp"

namespace tandem::cli {

struct SpOptions {
  std::string sp;  // scheme name; empty: single rank, no sequence parallelism
  int ranks = 1;   // in-process ranks when not under mpirun
  uint64_t max_memory = 0;  // per-rank budget in bytes (--max-memory); 0 = none
};

void add_sp_options(CLI::App* sub, SpOptions& o);

// True when this process was started by mpirun (Open MPI or a PMI launcher).
bool launched_by_mpirun();

// Runs fn once per rank (one rank per process under mpirun, else o.ranks threads).
// Errors on any rank propagate (the run fails).
void run_world(const SpOptions& o, const std::function<void(comm::Communicator&)>& fn);

// The scheme to use on `comm` (ring when --sp is empty and P > 1).
parallel::Scheme scheme_of(const SpOptions& o, const comm::Communicator& comm);

}  // namespace tandem::cli
