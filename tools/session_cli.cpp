#include "session_cli.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "tandem/comm/in_process.hpp"
#include "tandem/comm/mpi.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/process_memory.hpp"
#include "tandem/core/size.hpp"
#include "tandem/parallel/scheme.hpp"
#include "tandem/runtime/weight_layout.hpp"

namespace tandem::cli {

void add_sp_options(CLI::App* sub, SpOptions& o) {
  sub->add_option("--sp", o.sp,
                  "Sequence-parallel scheme (run under mpirun, or with --ranks; default local "
                  "on one rank, ring on more):\n" + parallel::scheme_help());
  sub->add_option("--ranks", o.ranks,
                  "Ranks as threads of this process when not under mpirun (default 1)")
      ->check(int_in(1, 256));
  sub->add_option("--sp-chunk", o.sp_chunk,
                  fmt::format("Tokens per rank per prefill step under ring, zigzag, pass-q and auto "
                              "(the sequence is placed band by band, so activations and buffers "
                              "are bounded by the chunk; 0: each rank's whole shard in one step; "
                              "default {} / P, at least {}: a step of all ranks together is the "
                              "single pipeline's)",
                              parallel::kDefaultSpChunk, parallel::kMinSpChunk))
      ->check(int_in(0, 1 << 30));
  sub->add_option_function<std::string>(
         "--max-memory",
         [&o](const std::string& v) {
           const auto b = parse_size(v);
           if (!b || *b == 0)
             throw CLI::ValidationError("--max-memory", "'" + v + "' is not a size (e.g. 512M, 4G, 1.5GiB)");
           o.max_memory = *b;
         },
         "Memory budget per rank (e.g. 4G); a run that needs more is refused before it starts");
}

bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr ||
         std::getenv("PMIX_RANK") != nullptr;
}

namespace {
// Under mpirun a failed peer makes the launcher SIGTERM the survivors: say who we were.
char g_term_msg[160];
size_t g_term_len = 0;
extern "C" void on_sigterm(int) {
  if (g_term_len) (void)!::write(2, g_term_msg, g_term_len);
  ::_exit(128 + SIGTERM);
}
void announce_termination(const comm::Communicator& c) {
  const int n = std::snprintf(g_term_msg, sizeof g_term_msg,
                              "tandem %s: terminated by SIGTERM (a peer rank failed or the job "
                              "was aborted)\n",
                              c.who().c_str());
  g_term_len = n > 0 ? std::min(size_t(n), sizeof g_term_msg - 1) : 0;
  std::signal(SIGTERM, on_sigterm);
}
}  // namespace

void run_world(const SpOptions& o, const std::function<void(comm::Communicator&)>& fn) {
  if (launched_by_mpirun()) {
    if (o.ranks != 1) bad_input("--ranks: not used under mpirun (mpirun -np sets the ranks)");
    if (!comm::mpi_available())
      bad_input("this tandem was built without MPI; run without mpirun and use --ranks P");
    auto world = comm::mpi_world(nullptr, nullptr);
    announce_termination(*world);
    fn(*world);
    return;
  }
  comm::run_in_process(o.ranks, fn);
}

void add_session_options(CLI::App* sub, SessionFlags& f) {
  add_threads_option(sub, f.threads);
  add_sp_options(sub, f.sp);
  add_engine_options(sub, f.engine);
}

void run_sessions(const std::shared_ptr<Model>& model, const SessionFlags& f, Workload w,
                  const std::function<void(Session&)>& fn) {
  run_sessions(model, f, [w](const parallel::Scheme&, const EngineOptions&, int) { return w; }, fn);
}

void run_sessions(const std::shared_ptr<Model>& model, const SessionFlags& f, const WorkloadFn& wfn,
                  const std::function<void(Session&)>& fn) {
  const ModelInfo info = ModelInfo::of(*model);
  std::once_flag laid_out;
  run_world(f.sp, [&](comm::Communicator& comm) {
    SessionOptions so;
    parallel::Scheme scheme = resolve_scheme(f.sp.sp, comm.size());
    scheme.chunk = parallel::resolve_sp_chunk(f.sp.sp_chunk, comm.size());
    so.scheme = scheme.name;
    so.sp_chunk = f.sp.sp_chunk;
    so.engine = f.engine.options(scheme.is("local"));
    so.threads = f.threads;
    so.max_memory = f.sp.max_memory;
    const Workload w = wfn(scheme, so.engine, comm.size());
    // The budget holds what this process already holds (measured once, before anything
    // large is allocated) beside the estimate.
    mark_baseline_rss();
    check_rank_memory(info, scheme, so.engine, comm.size(), comm.rank(), w, so.max_memory,
                      comm.who(), baseline_rss());
    std::call_once(laid_out, [&] {
      mark_baseline_rss();  // what the process holds before its first large allocation
      lay_out_weights(*model);
    });
    Session session(model, so, comm);
    fn(session);
  });
}

void print_memory_line(double estimate, const RankReport& mem) {
  constexpr double MiB = 1 << 20;
  if (mem.peak_rss_bytes <= 0) {
    fmt::print(stderr, "memory: estimate {:.1f} MiB per rank (peak RSS not measured here)\n",
               estimate / MiB);
    return;
  }
  fmt::print(stderr, "memory (rank 0's process): {}{}\n", mem.describe_memory(),
             estimate > 0 ? fmt::format("; the --max-memory estimate is {:.1f} MiB", estimate / MiB)
                          : std::string());
}

}  // namespace tandem::cli
