#pragma once
// Options and process setup shared by the subcommands that run a Session: under mpirun
// every process is one rank (MPI backend); without it, --ranks P runs P ranks as threads
// of this process (in-process backend); one rank is the `local` scheme.
#include <functional>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "common.hpp"
#include "tandem/comm/communicator.hpp"
#include "tandem/runtime/session.hpp"

namespace tandem::cli {

struct SpOptions {
  std::string sp;  // scheme name; empty: local on one rank, ring on more
  int ranks = 1;   // in-process ranks when not under mpirun
  uint64_t max_memory = 0;  // per-rank budget in bytes (--max-memory); 0 = none
  int64_t sp_chunk = parallel::kAutoSpChunk;  // --sp-chunk
};

void add_sp_options(CLI::App* sub, SpOptions& o);

// True when this process was started by mpirun (Open MPI or a PMI launcher).
bool launched_by_mpirun();

// Runs fn once per rank (one rank per process under mpirun, else o.ranks threads).
// Errors on any rank propagate (the run fails).
void run_world(const SpOptions& o, const std::function<void(comm::Communicator&)>& fn);

// Everything a command's sessions need.
struct SessionFlags {
  SpOptions sp;
  EngineFlags engine;
  int threads = 1;
};
void add_session_options(CLI::App* sub, SessionFlags& f);

// Runs fn with a Session on every rank: the scheme from --sp for the rank count, the
// engine flags (KV defaults by scheme), and --max-memory checked for `w` on each rank
// from the model's metadata before its weights are laid out (the one large allocation).
// `model` is loaded (mapped) but not laid out; this lays it out once per process.
void run_sessions(const std::shared_ptr<Model>& model, const SessionFlags& f, Workload w,
                  const std::function<void(Session&)>& fn);
// The same with the workload chosen per run (scheme, engine options, rank count).
using WorkloadFn = std::function<Workload(const parallel::Scheme&, const EngineOptions&, int ranks)>;
void run_sessions(const std::shared_ptr<Model>& model, const SessionFlags& f, const WorkloadFn& w,
                  const std::function<void(Session&)>& fn);

// One stderr line: this process's measured peak RSS itemized by the accounting
// (RankReport::describe_memory) beside the run's --max-memory estimate (left out when 0),
// or the estimate alone where RSS is unknown.
void print_memory_line(double estimate_bytes, const RankReport& memory);

}  // namespace tandem::cli
