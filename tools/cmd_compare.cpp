// tandem compare: the same prefill + decode workload under the naive single pipeline, the
// optimized single pipeline and each sequence-parallel scheme at each P, run as
// subprocesses of this very binary (mpirun for P > 1 when available, else in-process
// ranks), with the planner's prediction next to each measurement, a table on stdout and a
// report folder (results.json, SVG plots, traces, index.html).
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.hpp"
#include "common.hpp"
#include "compare_run.hpp"
#include "compare_train.hpp"
#include "tandem/analysis/calibrate.hpp"
#include "tandem/analysis/compare.hpp"
#include "tandem/analysis/model_shapes.hpp"
#include "tandem/analysis/hardware.hpp"
#include "tandem/analysis/links.hpp"
#include "tandem/comm/mpi.hpp"
#include "tandem/core/error.hpp"
#include "tandem/parallel/scheme.hpp"

namespace tandem::cli {
namespace {

namespace fs = std::filesystem;
using analysis::CompareResults;
using analysis::RunMeasurement;
using analysis::shell_quote;
const auto& quote = shell_quote;

struct Opts {
  std::string model, lengths, ranks = "2", launcher = "auto";
  std::string schemes = "ring,zigzag,ulysses,pass-q,hybrid";
  std::string out = "tandem-report";
  std::string links;  // --links RATE: ranks on emulated hosts; empty: this host
  // The planner's profile: a name or a calibrate file; empty: this machine's, calibrated
  // once and cached (machine_profile_path).
  std::string hardware;
  int threads = 0;  // 0: cores for one rank, cores / P per rank for P ranks
  int decode_tokens = 16;
  int rounds = 3;  // passes over every configuration; each row the median (median_of_rounds)
  bool rounds_given = false;
  int64_t naive_max = 256;
  bool json = false;
  bool train = false;  // the training workload instead of prefill + decode
  int64_t train_steps = 3;
  bool checkpoint_layers = false;
};

constexpr const char* kInferenceLengths = "256,1024,4096";
constexpr const char* kTrainLengths = "1024,4096,16384";

// Checks a --schemes entry against the registry (exit 2 naming the flag).
void check_scheme(const std::string& name) {
  if (!parallel::find_scheme(name)) parallel::parse_scheme(name, 0, "--schemes");
}

// A bare "hybrid" runs as Ulysses pairs x a ring over the pairs: hybrid:2x(P/2).
constexpr int kHybridGroup = 2;

// The schemes to run at P ranks, each as the registry configures it at P (a full
// spelling such as hybrid:2x2 runs at the P it names only).
std::vector<std::string> schemes_for(const std::vector<std::string>& names, int p) {
  std::vector<std::string> v;
  for (const auto& s : names) {
    std::string why;
    const auto scheme = parallel::find_scheme(s)
                            ? parallel::configure_scheme(s, p, kHybridGroup, &why)
                            : parallel::parse_scheme(s, 0, "--schemes");
    if (!scheme || (scheme->fixed_ranks != 0 && scheme->fixed_ranks != p)) continue;
    if (std::find(v.begin(), v.end(), scheme->name) == v.end()) v.push_back(scheme->name);
  }
  return v;
}

RunMeasurement make_run(const std::string& strategy, int ranks, int threads, int64_t n) {
  RunMeasurement run;
  run.strategy = strategy;
  run.ranks = ranks;
  run.threads = threads;
  run.tokens = n;
  return run;
}

struct Runner {
  Runner(const Opts& opts, std::string e, fs::path d)
      : o(opts), exe(std::move(e)), dir(std::move(d)) {}
  const Opts& o;
  std::string exe;
  fs::path dir;
  bool use_mpirun = false;
  bool has_reference = false, has_no_kv = false, has_trace = false, has_switches = false;
  bool has_repeat = false;
  // The naive pipeline: every sequential optimization this tandem can switch off.
  std::string naive_flags() const {
    std::string f = has_reference ? " --kernels reference" : "";
    if (has_switches) f += " --no-flash-attn --no-memory-plan --no-fusion --no-graph-reuse";
    return f;
  }
  int cores = 1;
  std::unique_ptr<analysis::EmulatedHosts> hosts;  // with --links
  // The planner's profile: this machine's, or with --links a copy whose links across nodes are
  // the measured emulated link (and one rank per node).
  std::string hardware;

  // `threads`: each rank's (0: not known). Where the ranks' threads fit the cores, each
  // rank is bound to cores of its own: unbound, the scheduler at times runs two ranks on
  // one core while the other idles (measured here: a rank's products 1.8x slower than its
  // peer's, either rank, run to run). More threads than cores: unbound, they take turns.
  std::string launch(int ranks, int threads = 0) const {
    if (ranks <= 1) return quote(exe);
    if (hosts) return hosts->mpirun_command(ranks) + " " + quote(exe);
    if (use_mpirun) {
      const std::string bind = threads > 0 && ranks * threads <= cores
                                   ? fmt::format("--map-by slot:PE={} --bind-to core", threads)
                                   : std::string("--bind-to none");
      return fmt::format("mpirun --allow-run-as-root --oversubscribe {} -np {} {}", bind, ranks,
                         quote(exe));
    }
    return quote(exe);
  }
  std::string ranks_flag(int ranks) const {
    return ranks > 1 && !use_mpirun ? fmt::format(" --ranks {}", ranks) : "";
  }

  // `round`: the round of compare --rounds (its trace file's suffix); 0: one round.
  void prefill(RunMeasurement& run, const std::string& model, int round = 0) {
    std::string cmd = fmt::format("{} prefill -m {} --random-tokens {} -t {} --json",
                                  launch(run.ranks, run.threads), quote(model), run.tokens, run.threads);
    // The steady prefill: one untimed run (graphs built, pages faulted in), then the median
    // of three, or with rounds one per round (the rounds' median stands for the repeats,
    // spread over minutes instead of a second); the report keeps the process's first
    // beside it.
    if (has_repeat) cmd += fmt::format(" --warmup 1 --repeat {}", o.rounds > 1 ? 1 : 3);
    if (run.strategy == "naive") cmd += naive_flags();
    if (run.ranks > 1) cmd += " --sp " + quote(run.strategy) + ranks_flag(run.ranks);
    if (has_trace && run.strategy != "naive") {
      fs::create_directories(dir / "traces");
      run.trace_file = "traces/" + file_name(run.label() + "-N" + std::to_string(run.tokens) +
                                              (round > 0 ? fmt::format("-r{}", round) : "") + ".json");
      cmd += " --trace " + quote((dir / run.trace_file).string());
    }
    const auto p = run_cmd(cmd, dir);
    if (p.code != 0) {
      run.ok = false, run.error = last_line(p.err), run.trace_file.clear();
      return;
    }
    try {
      analysis::set_prefill(run, prefill_report_from_json(nlohmann::json::parse(p.out), "prefill --json"));
    } catch (const std::exception& e) {
      run.ok = false, run.error = std::string("unreadable prefill output: ") + e.what();
    }
    if (!run.trace_file.empty() && !fs::exists(dir / run.trace_file)) run.trace_file.clear();
  }

  void decode(RunMeasurement& run, const std::string& model) {
    const int n_gen = run.strategy == "naive" ? std::min(o.decode_tokens, analysis::kNaiveDecodeTokens) : o.decode_tokens;
    if (n_gen <= 0) return;
    // A reproducible prompt of N small ids (valid for any vocabulary of 1000 or more).
    std::string ids;
    uint32_t x = 12345;
    for (int64_t i = 0; i < run.tokens; ++i) {
      x = x * 1103515245u + 12345u;
      ids += (i ? "," : "") + std::to_string(3 + (x >> 16) % 997);
    }
    if (ids.size() > 120000) {
      run.decode_error = "prompt too long to pass as --ids";
      return;
    }
    std::string cmd = fmt::format("{} generate -m {} --ids {} -n {} --temp 0 --json -t {}",
                                  launch(run.ranks, run.threads), quote(model), ids, n_gen, run.threads);
    if (run.strategy == "naive") {
      cmd += naive_flags();
      if (has_no_kv) cmd += " --no-kv-cache";
    }
    if (run.ranks > 1) cmd += " --sp " + quote(run.strategy) + ranks_flag(run.ranks);
    const auto p = run_cmd(cmd, dir);
    if (p.code != 0) {
      run.decode_error = last_line(p.err);
      return;
    }
    try {
      const GenerateReport g = generate_report_from_json(nlohmann::json::parse(p.out), "generate --json");
      // The median step: a transient on this shared machine (one step of 16 taking 10x)
      // moves the mean, not the median; the planner predicts a steady step.
      std::vector<double> steps = g.stats.step_seconds;
      if (!steps.empty()) {
        std::nth_element(steps.begin(), steps.begin() + long(steps.size() / 2), steps.end());
        run.decode_tokens_per_s = 1 / steps[steps.size() / 2];
      } else {
        run.decode_tokens_per_s = g.stats.gen_tokens_per_s();
      }
    } catch (const std::exception& e) {
      run.decode_error = std::string("unreadable generate output: ") + e.what();
    }
  }

  // The links setting, with an MPI ping-pong across one emulated link (comm-probe).
  analysis::LinksSetting probe_links(const analysis::LinkRate& rate) {
    analysis::LinksSetting l;
    l.rate = rate.name();
    l.bits_per_second = rate.bits_per_second;
    l.description = hosts->description();
    l.namespaces = hosts->namespaces();
    fmt::print(stderr, "compare: measuring one emulated link (MPI ping-pong, about 10 s)...");
    std::fflush(stderr);
    const auto p = run_cmd("timeout 120 " + launch(2) + " comm-probe", dir);
    try {
      const auto j = nlohmann::json::parse(p.out.substr(p.out.find('{')));
      l.measured_bandwidth = j.at("bandwidth").get<double>();
      l.measured_latency = j.at("latency").get<double>();
      fmt::print(stderr, " {:.2f} Gbit/s, {:.0f} us one way\n", l.measured_bandwidth * 8 / 1e9,
                 l.measured_latency * 1e6);
    } catch (const std::exception&) {
      if (p.code != 0)
        bad_input("--links: MPI across the emulated hosts failed: {}", last_line(p.err));
      fmt::print(stderr, " no reading ({})\n", last_line(p.err));
    }
    auto h = analysis::load_profile(hardware);
    h.name += "-links-" + l.rate;
    h.description += "; between ranks: emulated " + l.rate + " links (tandem compare --links)";
    h.devices_per_node = 1;
    if (!h.has_links) {  // one rank per emulated host: only the measured link is used
      h.has_links = true;
      h.intra = {l.measured_bandwidth > 0 ? l.measured_bandwidth : rate.bits_per_second / 8,
                 l.measured_bandwidth > 0 ? l.measured_latency : 0.0};
    }
    h.inter = {l.measured_bandwidth > 0 ? l.measured_bandwidth : rate.bits_per_second / 8,
               l.measured_bandwidth > 0 ? l.measured_latency : h.inter.latency};
    // The ranks talk over the emulated link only: curves measured over this host's own
    // transports would stand in for it.
    for (analysis::Curve* c : {&h.curves.intra_message, &h.curves.inter_message,
                               &h.curves.intra_alltoall, &h.curves.inter_alltoall})
      *c = analysis::Curve{};
    hardware = (dir / "links-profile.json").string();
    std::ofstream(hardware) << analysis::profile_to_json(h).dump(2) << "\n";
    return l;
  }

  // The planner's prediction of the run, in this process (the same library as `plan`).
  void predict(RunMeasurement& run, const std::string& model) {
    if (!request) {
      request = analysis::plan_request(model, analysis::load_profile(hardware, "--hardware"), 1, 1,
                                       hosts ? 1 : 0, o.decode_tokens);
      request->sp_chunk = parallel::kAutoSpChunk;  // the prefill runs use the default chunk
    }
    run.predicted = analysis::predict_run(*request, run);
  }
  std::optional<analysis::PlanRequest> request;

  // Each core's speed, probed around every run (CoreProbe): this host's cores change
  // speed by the second; the report says how they ran and the planner predicts the run
  // on them. Null: not probed.
  std::unique_ptr<analysis::CoreProbe> probe;
  static constexpr analysis::CoreWork kKinds[] = {analysis::CoreWork::Product, analysis::CoreWork::Attention,
                                                  analysis::CoreWork::Stream};
  // Per CoreWork, alone [0..2] and with every core busy [3..5]: readings, each per core.
  std::vector<std::vector<double>> samples[6];
  void probe_cores() {
    if (!probe) return;
    for (const auto w : kKinds) {
      if (auto r = probe->rates(w, 2); !r.empty()) samples[int(w)].push_back(std::move(r));
      if (auto r = probe->together(w, 2); !r.empty()) samples[3 + int(w)].push_back(std::move(r));
    }
  }
  // The median of the samples per core and kind, into the run (a dip at one probe is
  // passed over; a kind a probe failed to read leaves the run without rates); the
  // samples start again.
  void keep_core_rates(RunMeasurement& run) {
    const size_t n_cores = samples[0].empty() ? 0 : samples[0].front().size(), n = samples[0].size();
    bool whole = true;
    for (const auto w : kKinds) whole &= samples[int(w)].size() == samples[0].size();
    if (whole) run.core_rates.assign(n_cores, analysis::CoreRates{});
    for (const auto w : kKinds)
      for (const bool busy : {false, true}) {
        auto& got = samples[(busy ? 3 : 0) + int(w)];
        for (size_t c = 0; whole && got.size() == n && c < n_cores; ++c) {
          std::vector<double> v;
          for (const auto& s : got) v.push_back(s[c]);
          std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
          run.core_rates[c].of(w, busy) = v[v.size() / 2];
        }
        got.clear();
      }
  }
};

// The model's own calls (calibrate --model --update), measured once into this machine's
// profile: the planner reads them for its products and attention. A failure leaves the
// profile as it was (the predictions then read the node's grids) and says so.
void add_model_calls(const Runner& r, const std::string& profile, const std::string& model) {
  const analysis::GgufShape g = analysis::shape_from_gguf(model);
  const analysis::ModelShape& m = g.shape;
  const analysis::HardwareProfile h = analysis::load_profile(profile);
  const std::string qkv = analysis::shape_matmul_key(
      g.weight_dtype, analysis::MatKind::Qkv, double((m.n_head + 2 * m.n_head_kv) * m.head_dim),
      double(m.n_embd));
  if (h.curves.shape_matmul.count(qkv)) return;
  fmt::print(stderr, "compare: measuring the model's own calls into {} (once per model shape, "
                     "about 10 s)\n", profile);
  const std::string cmd = fmt::format("{} calibrate -t {} -o {} --update -m {}", quote(r.exe),
                                      h.threads, quote(profile), quote(model));
  if (std::system(cmd.c_str()) != 0)
    fmt::print(stderr, "compare: `{}` failed: the predictions read the node's grids only\n", cmd);
}

std::string make_synthetic_model(const Runner& r) {
  const fs::path file = r.dir / "tiny-f16.gguf";
  if (fs::exists(file)) return file.string();
  const char* env = std::getenv("TANDEM_SHARED");
  const fs::path vocab = fs::path(env ? env : "../shared") / "vocab" / "ggml-vocab-llama-spm.gguf";
  const std::string vocab_flag =
      fs::exists(vocab) ? "--vocab " + quote(vocab.string()) : std::string("--vocab-size 32000");
  fmt::print(stderr, "compare: making the tiny synthetic model (F16, {}) in {}\n",
             fs::exists(vocab) ? vocab.string() : "vocab size 32000", file.string());
  const auto p = run_cmd(fmt::format("{} make-model --preset tiny --type f16 {} -o {}",
                                     quote(r.exe), vocab_flag, quote(file.string())),
                         r.dir);
  if (p.code != 0) fail(ErrorKind::Internal, "make-model: {}", last_line(p.err));
  return file.string();
}

bool help_mentions(const std::string& exe, const std::string& sub, const std::string& flag,
                   const fs::path& dir) {
  const auto p = run_cmd(quote(exe) + " " + sub + " --help", dir);
  return p.out.find(flag) != std::string::npos;
}

void run(const Opts& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto lengths = parse_int_list(
      o.lengths.empty() ? (o.train ? kTrainLengths : kInferenceLengths) : o.lengths, "--lengths",
      o.train ? 16 : 1, int64_t{1} << 22);
  const auto ranks = parse_int_list(o.ranks, "--ranks", 2, 64);
  const auto scheme_names = split_list(o.schemes);
  for (const auto& s : scheme_names) check_scheme(s);
  if (scheme_names.empty()) bad_input("--schemes: empty list");
  if (o.decode_tokens < 0) bad_input("--decode-tokens: must be 0 or more");

  std::optional<analysis::LinkRate> link_rate;
  if (!o.links.empty()) {
    link_rate = analysis::parse_link_rate(o.links, "--links");
    if (o.launcher == "threads") bad_input("--links: needs MPI ranks, not --launcher threads");
    analysis::check_links_supported();
    if (!comm::mpi_available()) bad_input("--links: this tandem was built without MPI");
  }

  Runner r(o, fs::read_symlink("/proc/self/exe").string(), fs::path(o.out));
  if (o.train && o.rounds_given)
    bad_input("--rounds: the training comparison (--train) measures each run once; "
              "leave --rounds out");
  if (o.train) {
    if (link_rate) bad_input("--links: not available with --train yet (training ranks run on this host)");
    const bool mpi = comm::mpi_available() && analysis::program_on_path("mpirun");
    if (o.launcher == "mpirun" && !mpi)
      bad_input("--launcher mpirun: {}", comm::mpi_available() ? "mpirun is not on PATH"
                                                                : "this tandem was built without MPI");
    r.use_mpirun = o.launcher == "mpirun" || (o.launcher == "auto" && mpi);
    CompareTrainSetup t;
    t.exe = r.exe;
    t.dir = r.dir;
    t.model = o.model;
    t.lengths = lengths;
    for (const int64_t p : ranks)
      for (const auto& name : schemes_for(scheme_names, int(p))) t.schemes.emplace_back(name, int(p));
    t.launch = [&r](int p) { return r.launch(p); };
    t.in_process = !r.use_mpirun;
    t.launcher = r.use_mpirun ? "mpirun" : "in-process threads";
    t.threads = o.threads;
    t.cores = default_threads();
    t.steps = o.train_steps;
    t.checkpoint_layers = o.checkpoint_layers;
    t.json = o.json;
    run_compare_train(t);
    return;
  }
  // This machine's profile unless --hardware names one: calibrated once per CPU model and
  // core count, then read from the cache.
  std::string hardware = o.hardware;
  if (hardware.empty()) {
    hardware = machine_profile_path(default_threads());
    // One made before calibrate held its curves at the cores' rates, or one this tandem
    // cannot read, is made again (it is a cache).
    bool stale = false;
    if (fs::exists(hardware)) try {
        stale = !(analysis::load_profile(hardware).core_rate.stream > 0);
      } catch (const Error&) {
        stale = true;
      }
    if (!fs::exists(hardware) || stale) {
      fmt::print(stderr, "compare: no {}profile of this machine yet: calibrating once into {} "
                         "(about 30 s)\n", stale ? "per-core " : "", hardware);
      const bool mpi = comm::mpi_available() && analysis::program_on_path("mpirun") &&
                       o.launcher != "threads";
      const std::string cmd = fmt::format("{} calibrate -t {} -o {}{}", quote(r.exe), default_threads(),
                                          quote(hardware), mpi ? "" : " --no-links");
      if (std::system(cmd.c_str()) != 0)
        fail(ErrorKind::Internal, "compare: calibrating this machine failed (`{}`); give a profile "
                                  "with --hardware", cmd);
    }
  }
  // A bad name or file fails now, naming --hardware.
  if (!analysis::load_profile(hardware).has_links)
    fmt::print(stderr, "compare: --hardware {}: the profile has no link figures (calibrated "
                       "without MPI): P > 1 runs are measured without a prediction\n", hardware);
  r.hardware = fs::exists(hardware) ? fs::absolute(hardware).string() : hardware;
  r.probe = std::make_unique<analysis::CoreProbe>(default_threads());
  if (!r.probe->active()) r.probe.reset();
  std::error_code ec;
  fs::create_directories(r.dir, ec);
  if (ec) bad_input("--out {}: cannot create the folder ({})", o.out, ec.message());
  if (link_rate) r.dir = fs::absolute(r.dir);  // the ranks start in other namespaces
  r.cores = default_threads();
  CompareResults res;
  res.cores = r.cores;
  res.decode_tokens = o.decode_tokens;
  res.naive_max = o.naive_max;
  res.lengths = lengths;
  const bool mpi_ok = comm::mpi_available() && analysis::program_on_path("mpirun");
  if (o.launcher == "mpirun" && !mpi_ok)
    bad_input("--launcher mpirun: {}", comm::mpi_available() ? "mpirun is not on PATH"
                                                              : "this tandem was built without MPI");
  r.use_mpirun = o.launcher == "mpirun" || (o.launcher == "auto" && mpi_ok);
  res.launcher = r.use_mpirun ? "mpirun" : "in-process threads";
  res.launcher_note = r.use_mpirun ? "one process per rank, MPI (Open MPI shared memory)"
                      : o.launcher == "threads"
                          ? "--launcher threads: ranks as threads of one process"
                          : "mpirun not found or no MPI in this build: ranks as threads of one "
                            "process (--ranks P)";
  if (link_rate) {
    const int hosts = int(*std::max_element(ranks.begin(), ranks.end()));
    fmt::print(stderr, "compare: building {} emulated hosts linked at {} (--links)...\n", hosts,
               link_rate->name());
    r.hosts = std::make_unique<analysis::EmulatedHosts>(hosts, *link_rate);
    res.links = r.probe_links(*link_rate);
    res.launcher_note = fmt::format("one process per rank, each on its own emulated host "
                                    "linked at {}, MPI over TCP", res.links->rate);
  }
  res.planner_hardware = r.hardware;
  r.has_reference = help_mentions(r.exe, "prefill", "--kernels", r.dir);
  r.has_no_kv = help_mentions(r.exe, "generate", "--no-kv-cache", r.dir);
  r.has_trace = help_mentions(r.exe, "prefill", "--trace", r.dir);
  r.has_repeat = help_mentions(r.exe, "prefill", "--repeat", r.dir);
  r.has_switches = help_mentions(r.exe, "prefill", "--no-graph-reuse", r.dir);

  res.synthetic_model = o.model.empty();
  res.model = o.model.empty() ? make_synthetic_model(r) : o.model;
  if (o.hardware.empty()) add_model_calls(r, hardware, res.model);
  fmt::print(stderr, "compare: P > 1 runs use {} ({})\n", res.launcher, res.launcher_note);
  if (!r.has_reference || !r.has_no_kv)
    fmt::print(stderr, "compare: note: this tandem lacks{}{}; the naive rows use what exists\n",
               r.has_reference ? "" : " --kernels reference", r.has_no_kv ? "" : " --no-kv-cache");

  // The run list: per N, naive (up to --naive-max), single, then each scheme at each P.
  for (const int64_t n : lengths) {
    const int t1 = o.threads > 0 ? o.threads : r.cores;
    if (n <= o.naive_max) res.runs.push_back(make_run("naive", 1, t1, n));
    res.runs.push_back(make_run("single", 1, t1, n));
    for (const int64_t p : ranks)
      for (const auto& s : schemes_for(scheme_names, int(p)))
        res.runs.push_back(make_run(s, int(p), o.threads > 0 ? o.threads : std::max(1, r.cores / int(p)), n));
  }
  if (res.runs.empty()) bad_input("--schemes: nothing to run");
  // Round after round over every configuration: a slow spell of a shared host (its cores
  // change speed for seconds at a time) lands in one round of a configuration, and each
  // row is the median of its rounds, each measured and predicted on its own.
  const std::vector<RunMeasurement> plan = res.runs;
  res.rounds = o.rounds;
  std::vector<std::vector<RunMeasurement>> rounds(plan.size());
  for (int k = 0; k < o.rounds; ++k) {
    for (size_t i = 0; i < plan.size(); ++i) {
      RunMeasurement run = plan[i];
      fmt::print(stderr, "{}[{}/{}] {} N={} ({} rank(s) x {} thread(s)) ...",
                 o.rounds > 1 ? fmt::format("round {}/{} ", k + 1, o.rounds) : "", i + 1, plan.size(),
                 run.label(), run.tokens, run.ranks, run.threads);
      std::fflush(stderr);
      const auto s0 = std::chrono::steady_clock::now();
      if (run.strategy != "naive") r.probe_cores();
      r.prefill(run, res.model, o.rounds > 1 ? k + 1 : 0);
      if (run.strategy != "naive") r.probe_cores();
      if (run.ok) r.decode(run, res.model);
      if (run.strategy != "naive") r.probe_cores();
      r.keep_core_rates(run);
      r.predict(run, res.model);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
      if (run.ok)
        fmt::print(stderr, " prefill {:.3f} s{} ({:.1f} s)\n", run.prefill_seconds,
                   run.decode_tokens_per_s ? fmt::format(", decode {:.1f} tok/s", *run.decode_tokens_per_s)
                                           : (run.decode_error.empty() ? "" : ", decode failed: " + run.decode_error),
                   secs);
      else
        fmt::print(stderr, " failed: {}\n", run.error);
      rounds[i].push_back(std::move(run));
    }
  }
  for (size_t i = 0; i < plan.size(); ++i) {
    res.runs[i] = analysis::median_of_rounds(rounds[i]);
    for (const auto& run : rounds[i])  // the other rounds' traces
      if (!run.trace_file.empty() && run.trace_file != res.runs[i].trace_file) {
        std::error_code gone;
        fs::remove(r.dir / run.trace_file, gone);
      }
  }
  res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto files = analysis::write_report(res, r.dir.string());
  bool any_ok = false;
  for (const auto& run : res.runs) any_ok |= run.ok;
  if (o.json) {
    fmt::print("{}\n", analysis::to_json(res).dump(2));
  } else {
    fmt::print("model {}; P > 1 via {}; {} core(s); decode {} tokens; {:.0f} s in all\n\n",
               res.model, res.launcher, res.cores, res.decode_tokens, res.wall_seconds);
    fmt::print("{}\n{}\n", analysis::compare_table(res), analysis::crossover_table(res));
    for (const auto& line : analysis::crossover_findings(res)) fmt::print("- {}\n", line);
    fmt::print("\nreport: {}\n", (r.dir / "index.html").string());
  }
  if (!any_ok) fail(ErrorKind::Internal, "compare: every run failed (see the table)");
}

}  // namespace

void add_compare(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand(
      "compare", "Measure naive, optimized and sequence-parallel runs side by side; write a report");
  sub->add_option("-m,--model", o->model,
                  "GGUF model (default: make the tiny synthetic model in --out)")
      ->check(CLI::ExistingFile);
  sub->add_option("--lengths", o->lengths,
                  fmt::format("Sequence lengths N, comma list (default {}; with --train {})",
                              kInferenceLengths, kTrainLengths));
  sub->add_option("--ranks", o->ranks, "Rank counts P > 1, comma list (default 2)");
  sub->add_option("--schemes", o->schemes,
                  "Schemes: " + parallel::scheme_list(false) +
                      "; a bare hybrid runs as hybrid:2x(P/2) (default " + o->schemes + ")");
  sub->add_option("-t,--threads", o->threads,
                  "Threads per rank (default: all cores for one rank, cores/P for P ranks)")
      ->check(int_in(1, 1024));
  sub->add_option("--decode-tokens", o->decode_tokens,
                  fmt::format("Tokens decoded after the prompt (default 16; the naive pipeline "
                              "decodes at most {})", analysis::kNaiveDecodeTokens))
      ->check(int_in(0, 1 << 20));
  auto* rounds = sub->add_option("--rounds", o->rounds,
                                 "Passes over every configuration, each row the median of its "
                                 "rounds: a slow spell of a shared host moves one round, not the "
                                 "figure (default 3; 1 to measure each once)")
                     ->check(int_in(1, 100));
  sub->add_option("--naive-max", o->naive_max,
                  "Longest N for the naive pipeline, which is slow (default 256)")
      ->check(int_in(0, int64_t{1} << 22));
  sub->add_option("--launcher", o->launcher,
                  "How P > 1 runs start: auto (mpirun when found), mpirun or threads")
      ->check(CLI::IsMember({"auto", "mpirun", "threads"}));
  sub->add_option("--links", o->links,
                  "Run the P > 1 ranks as emulated hosts (network namespaces on a bridge, tbf) "
                  "linked at this rate: 1gbit, 10gbit, 500mbit, ... (needs root); the report "
                  "shows the crossover N below which they lose to the single pipeline");
  sub->add_option("--hardware", o->hardware,
                  "Profile of the planner's predictions: a built-in name or a file written by "
                  "`tandem calibrate` (default: this machine's, calibrated once and cached in "
                  "~/.cache/tandem/profiles/)");
  sub->add_option("--out", o->out, "Report folder (default tandem-report/)");
  sub->add_flag("--json", o->json, "Print results.json on stdout instead of the table");
  sub->add_flag("--train", o->train,
                "Compare the training workload instead (tandem train on the passkey task, batch 1: "
                "step time, memory per rank, communication per step); writes train.html");
  sub->add_option("--train-steps", o->train_steps,
                  "Training steps per run with --train (the first is not timed; default 3)")
      ->check(int_in(1, 1000));
  sub->add_flag("--checkpoint-layers", o->checkpoint_layers,
                "With --train: recompute each layer in the backward (tandem train --checkpoint-layers)");
  sub->callback([o, rounds] {
    o->rounds_given = rounds->count() > 0;
    run(*o);
  });
}

}  // namespace tandem::cli
