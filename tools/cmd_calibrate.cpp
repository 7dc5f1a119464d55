// tandem calibrate: measures this machine into a hardware profile for `tandem plan`
// (FLOP/s, achieved matmul efficiency, memory bandwidth and capacity, MPI bandwidth and
// latency over shared memory and over TCP). `comm-probe` is the MPI half, run by
// calibrate under mpirun.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "commands.hpp"
#include "common.hpp"
#include "session_cli.hpp"
#include "tandem/analysis/hardware.hpp"
#include "tandem/analysis/roofline.hpp"
#include "tandem/comm/mpi.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::cli {
namespace {

struct Opts {
  std::string out = "tandem-profile.json";
  int threads = 1;
};

// Fraction of the FMA peak that a prefill-sized f32 matrix product reaches here.
double matmul_efficiency(int threads, double peak) {
  const int64_t rows = 2048, cols = 768, m = 256;
  std::vector<float> w(size_t(rows * cols)), x(size_t(m * cols)), y(size_t(m * rows));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& v : w) v = u(rng);
  for (auto& v : x) v = u(rng);
  MatrixView mv{DType::F32, rows, cols, w.data(), size_t(cols) * sizeof(float)};
  kernels::ThreadPool pool(threads);
  kernels::matmul(mv, x.data(), m, y.data(), pool);  // warm-up
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const Stopwatch sw;
    kernels::matmul(mv, x.data(), m, y.data(), pool);
    best = std::min(best, sw.seconds());
  }
  return std::min(1.0, 2.0 * double(rows * cols * m) / best / peak);
}

struct LinkMeasure {
  double bandwidth = 0, latency = 0;
  bool ok = false;
};

// Runs comm-probe on 2 ranks under mpirun with the given transports.
LinkMeasure probe_link(const std::string& btl) {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return {};
  self[n] = '\0';
  const std::string cmd = "timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none "
                          "--mca btl " + btl + " -np 2 " + std::string(self) + " comm-probe 2>/dev/null";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {};
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  if (::pclose(p) != 0) return {};
  try {
    const auto j = nlohmann::json::parse(out.substr(out.find('{')));
    return {j.at("bandwidth").get<double>(), j.at("latency").get<double>(), true};
  } catch (const std::exception&) {
    return {};
  }
}

void run(const Opts& o) {
  fmt::print(stderr, "measuring memory bandwidth and FMA peak with {} thread(s)...\n", o.threads);
  analysis::RooflineOptions ro;
  ro.threads = o.threads;
  const auto roof = analysis::measure_roofline(ro);
  fmt::print(stderr, "measuring matmul efficiency...\n");
  const double eff = matmul_efficiency(o.threads, roof.fma_peak);
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  const int cores = default_threads();

  analysis::HardwareProfile h;
  h.name = "calibrated";
  h.description = fmt::format("measured by tandem calibrate: one device = one rank with {} thread(s)",
                              o.threads);
  h.flops["f32"] = roof.fma_peak;
  h.efficiency = eff;
  h.memory_bandwidth = roof.read_bandwidth;
  h.memory_efficiency = 1.0;
  h.devices_per_node = std::max(1, cores / o.threads);
  h.memory_capacity = double(pages) * double(page) / h.devices_per_node;
  h.activation_bytes = 4;
  const bool mpi = launched_by_mpirun() == false && std::system("command -v mpirun >/dev/null 2>&1") == 0;
  LinkMeasure shm, tcp;
  if (mpi) {
    fmt::print(stderr, "measuring MPI over shared memory and over TCP (mpirun -np 2)...\n");
    shm = probe_link("self,vader");
    tcp = probe_link("self,tcp");
  }
  // Links are written only as measured, both or neither: a profile without them still
  // loads, plans one device and serves compare's P = 1 predictions; plan refuses
  // --gpus > 1 with it, naming the missing fields (HardwareProfile::has_links).
  h.has_links = shm.ok && tcp.ok;
  std::string no_links;
  if (!h.has_links) {
    no_links = !mpi ? (launched_by_mpirun() ? "calibrate runs under mpirun itself"
                                            : "mpirun is not on PATH")
                    : fmt::format("the MPI probe failed over {}",
                                  !shm.ok && !tcp.ok ? "shared memory and TCP"
                                  : !shm.ok          ? "shared memory (btl vader)"
                                                     : "TCP (btl tcp)");
    h.description += "; links not measured (" + no_links + ")";
  } else {
    h.intra = {shm.bandwidth, shm.latency};
    h.inter = {tcp.bandwidth, tcp.latency};
  }
  h.validate("calibrate");
  const auto j = analysis::profile_to_json(h);
  std::FILE* f = std::fopen(o.out.c_str(), "w");
  if (!f) bad_input("-o {}: cannot create", o.out);
  fmt::print(f, "{}\n", j.dump(2));
  std::fclose(f);
  fmt::print("{}\nwrote {} (use: tandem plan --hardware {})\n", j.dump(2), o.out, o.out);
  if (!h.has_links)
    fmt::print(stderr,
               "calibrate: MPI bandwidth and latency NOT measured: {}. The profile has no "
               "intra_node/inter_node fields: plan uses it for --gpus 1 only, compare for its "
               "one-rank predictions only. Install Open MPI (mpirun) and run calibrate again "
               "for link figures.\n",
               no_links);
}

// Ping-pong between ranks 0 and 1; rank 0 prints {"bandwidth": B/s, "latency": s}.
void probe(comm::Communicator& c) {
  if (c.size() != 2) bad_input("comm-probe: needs exactly 2 ranks");
  const int peer = 1 - c.rank();
  auto pingpong = [&](size_t bytes, int iters) {
    std::vector<char> buf(bytes);
    c.barrier();
    const Stopwatch sw;
    for (int i = 0; i < iters; ++i) {
      if (c.rank() == 0) {
        c.send(buf.data(), bytes, peer, 1);
        c.recv(buf.data(), bytes, peer, 2);
      } else {
        c.recv(buf.data(), bytes, peer, 1);
        c.send(buf.data(), bytes, peer, 2);
      }
    }
    return sw.seconds() / iters / 2;  // one way
  };
  pingpong(8, 100);
  const double latency = pingpong(8, 2000);
  const size_t big = size_t(32) << 20;
  pingpong(big, 2);
  const double t = pingpong(big, 6);
  if (c.rank() == 0)
    fmt::print("{{\"bandwidth\": {:.6g}, \"latency\": {:.6g}}}\n", double(big) / t, latency);
}

}  // namespace

void add_calibrate(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("calibrate", "Measure this machine into a hardware profile for tandem plan");
  sub->add_option("-o,--out", o->out, "Profile file to write (default tandem-profile.json)");
  add_threads_option(sub, o->threads);
  sub->callback([o] { run(*o); });

  auto* pr = app.add_subcommand("comm-probe", "MPI ping-pong used by calibrate (run under mpirun -np 2)");
  pr->group("");  // hidden from the main help
  pr->callback([] {
    SpOptions sp;
    run_world(sp, probe);
  });
}

}  // namespace tandem::cli
