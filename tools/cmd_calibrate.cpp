// tandem calibrate: measures this machine into a hardware profile with curves for
// `tandem plan` and `tandem compare` (analysis/calibrate.hpp): matrix products per weight
// type, attention, per-op fixed costs and bandwidth at 1..T threads, and MPI message and
// all-to-all rates over shared memory and over TCP (comm-probe, run under mpirun).
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "session_cli.hpp"
#include "tandem/analysis/calibrate.hpp"
#include "tandem/analysis/hardware.hpp"
#include "tandem/analysis/model_shapes.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::cli {
namespace {

struct Opts {
  std::string out = "tandem-profile.json";
  int threads = 1;
  std::string types;
  bool no_links = false;
  std::string model;   // also measure this model shape's own calls
  bool update = false; // add them to the profile at -o, measuring nothing else
};

// The shape, weight type and file of --model: a GGUF file's, or a named shape's with the
// first of --types (f16 by default) and no file.
struct ToMeasure {
  analysis::ModelShape shape;
  std::string dtype, path;
};
ToMeasure model_to_measure(const Opts& o) {
  if (auto shape = analysis::named_shape(o.model))
    return {*shape, o.types.empty() ? std::string("f16") : split_list(o.types).front(), ""};
  std::error_code ec;
  if (!std::filesystem::is_regular_file(o.model, ec))
    bad_input("--model '{}': not a GGUF file nor a named shape", o.model);
  auto g = analysis::shape_from_gguf(o.model);
  return {g.shape, g.weight_dtype, o.model};
}

void write_profile(const analysis::HardwareProfile& h, const std::string& path) {
  const std::filesystem::path out(path);
  std::error_code ec;
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path(), ec);
  // Written whole or not at all: a temporary file, then renamed.
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) bad_input("-o {}: cannot create", path);
  fmt::print(f, "{}\n", analysis::profile_to_json(h).dump(1));
  if (std::fclose(f) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0)
    bad_input("-o {}: cannot write", path);
}

// comm-probe on 2 ranks under mpirun with the given transports; throws naming the link.
analysis::LinkCurves probe_link(const std::string& btl, const std::string& what) {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) fail(ErrorKind::Internal, "calibrate: cannot find its own executable");
  self[n] = '\0';
  const std::string cmd = "timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none "
                          "--mca btl " + btl + " -np 2 " + std::string(self) + " comm-probe 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) fail(ErrorKind::Comm, "calibrate: {}: cannot start mpirun", what);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = ::pclose(p);
  const auto brace = out.find('{');
  if (rc != 0 || brace == std::string::npos) {
    std::string last = out.substr(0, 300);
    fail(ErrorKind::Comm, "calibrate: MPI {} not measured (btl {}): mpirun exited {}: {} "
         "(--no-links calibrates one node only)", what, btl, rc, last);
  }
  return analysis::link_curves_from_json(nlohmann::json::parse(out.substr(brace)), "comm-probe");
}

void run(const Opts& o) {
  const Stopwatch sw;
  analysis::CalibrateOptions co;
  co.threads = o.threads;
  co.types = o.types.empty() ? std::vector<std::string>{} : split_list(o.types);
  co.progress = [&](const std::string& line) { fmt::print(stderr, "[{:5.1f} s] {}\n", sw.seconds(), line); };
  const bool under_mpirun = launched_by_mpirun();
  if (under_mpirun) bad_input("calibrate: run it without mpirun (it starts its own for the links)");
  // A bad --model fails before anything is measured.
  const ToMeasure m = o.model.empty() ? ToMeasure{} : model_to_measure(o);
  if (o.update) {
    if (o.model.empty()) bad_input("--update: adds a model's calls to a profile; give --model");
    analysis::HardwareProfile h = analysis::load_profile(o.out, "-o");
    if (h.threads != o.threads)
      bad_input("--update: -o {} was calibrated with {} threads, not -t {}", o.out, h.threads, o.threads);
    fmt::print(stderr, "measuring the calls of {} ({}) with {} thread(s) into {}\n", o.model, m.dtype,
               o.threads, o.out);
    analysis::calibrate_model_shape(h, m.shape, m.dtype, m.path, co);
    h.validate("calibrate");
    write_profile(h, o.out);
    fmt::print("wrote {} in {:.1f} s\n", o.out, sw.seconds());
    return;
  }
  if (!o.no_links && std::system("command -v mpirun >/dev/null 2>&1") != 0)
    bad_input("calibrate: MPI links cannot be measured: mpirun is not on PATH (install Open MPI, "
              "or --no-links for a profile of one node)");
  fmt::print(stderr, "calibrating with {} thread(s): bandwidth, op overhead, matmul per type, attention{}\n",
             o.threads, o.no_links ? "" : ", MPI links");
  analysis::HardwareProfile h = analysis::calibrate_node(co);
  h.name = "calibrated";
  h.description = fmt::format("{}, {} threads, measured by tandem calibrate", cpu_model(), o.threads);
  h.devices_per_node = o.threads;  // one rank per core unless told otherwise
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  h.memory_capacity = double(pages) * double(page);  // the node's; ranks share it
  h.has_links = !o.no_links;
  if (h.has_links) {
    const auto shm = probe_link("self,vader", "shared memory");
    co.progress(fmt::format("MPI shared memory: {:.2f} GB/s, {:.1f} us one way", shm.bandwidth / 1e9,
                            shm.latency * 1e6));
    const auto tcp = probe_link("self,tcp", "TCP");
    co.progress(fmt::format("MPI TCP: {:.2f} GB/s, {:.1f} us one way", tcp.bandwidth / 1e9, tcp.latency * 1e6));
    h.intra = {shm.bandwidth, shm.latency};
    h.inter = {tcp.bandwidth, tcp.latency};
    h.curves.intra_message = shm.message;
    h.curves.intra_alltoall = shm.alltoall;
    h.curves.inter_message = tcp.message;
    h.curves.inter_alltoall = tcp.alltoall;
  } else {
    h.description += "; no links (--no-links)";
  }
  if (!o.model.empty()) analysis::calibrate_model_shape(h, m.shape, m.dtype, m.path, co);
  h.validate("calibrate");
  write_profile(h, o.out);
  fmt::print("wrote {} in {:.1f} s (use: tandem plan --hardware {}; tandem compare --hardware {})\n",
             o.out, sw.seconds(), o.out, o.out);
}

// Rank 0 prints the link curves between ranks 0 and 1 as JSON.
void probe(comm::Communicator& c) {
  const auto l = analysis::measure_links(c);
  if (c.rank() == 0) fmt::print("{}\n", analysis::link_curves_to_json(l).dump());
}

}  // namespace

void add_calibrate(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("calibrate", "Measure this machine into a hardware profile (curves) for plan and compare");
  sub->add_option("-o,--out", o->out, "Profile file to write (default tandem-profile.json)");
  add_threads_option(sub, o->threads);
  sub->add_option("--types", o->types, "Weight types of the matmul curves, comma-separated (default: every type)");
  sub->add_flag("--no-links", o->no_links, "Do not measure MPI links: a profile of one node (plans --gpus 1)");
  sub->add_option("-m,--model", o->model,
                  "Also measure this model's own calls as the runtime runs them (its products, "
                  "output head and attention): a GGUF file, or a named shape in the first of --types");
  sub->add_flag("--update", o->update,
                "Add --model's calls to the profile at -o (made with the same -t), measuring nothing else");
  sub->callback([o] { run(*o); });

  auto* cp = app.add_subcommand("core-probe", "Each core's speed alone and with every core busy, once a second");
  cp->group("");  // a diagnostic, hidden from the main help
  auto secs = std::make_shared<double>(60);
  cp->add_option("--seconds", *secs, "How long to keep reading (default 60)");
  cp->callback([secs] {
    analysis::CoreProbe probe(default_threads());
    if (!probe.active()) bad_input("core-probe: cannot pin one thread to each core");
    const Stopwatch sw;
    auto list = [](const std::vector<double>& r) {
      std::string v;
      for (double x : r) v += fmt::format(" {:6.1f}", x / 1e9);
      return v;
    };
    fmt::print("# seconds, then GFLOP/s per core: product alone, together; one-token product alone, together\n");
    while (sw.seconds() < *secs) {
      const auto pa = probe.rates(analysis::CoreWork::Product, 2), pt = probe.together(analysis::CoreWork::Product, 2);
      const auto sa = probe.rates(analysis::CoreWork::Stream, 2), st = probe.together(analysis::CoreWork::Stream, 2);
      fmt::print("{:7.1f} |{} |{} |{} |{}\n", sw.seconds(), list(pa), list(pt), list(sa), list(st));
      std::fflush(stdout);
      ::usleep(900000);  // with the readings, about a second a line
    }
  });

  auto* pr = app.add_subcommand("comm-probe", "MPI message and all-to-all rates used by calibrate (run under mpirun -np 2)");
  pr->group("");  // hidden from the main help
  pr->callback([] {
    SpOptions sp;
    run_world(sp, probe);
  });
}

}  // namespace tandem::cli
