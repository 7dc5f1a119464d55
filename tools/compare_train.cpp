#include "compare_train.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "compare_run.hpp"
#include "tandem/analysis/compare_train.hpp"
#include "tandem/analysis/links.hpp"
#include "tandem/core/error.hpp"
#include "tandem/train/sp_attention.hpp"

namespace tandem::cli {
namespace {

namespace fs = std::filesystem;
using analysis::shell_quote;

analysis::TrainMeasurement measurement(const std::string& strategy, int ranks, int threads, int64_t ctx) {
  analysis::TrainMeasurement m;
  m.strategy = strategy;
  m.ranks = ranks;
  m.threads = threads;
  m.ctx = ctx;
  return m;
}

}  // namespace

void run_compare_train(const CompareTrainSetup& s) {
  const auto t0 = std::chrono::steady_clock::now();
  analysis::TrainComparison res;
  res.model = s.model.empty() ? "--preset tiny" : s.model;
  res.task = "passkey";
  res.launcher = s.launcher;
  res.cores = s.cores;
  res.steps = s.steps;
  res.checkpoint_layers = s.checkpoint_layers;
  res.lengths = s.lengths;

  // The schemes with a training path at their P (pass-q has no backward).
  std::vector<std::pair<std::string, int>> schemes;
  for (const auto& [name, p] : s.schemes) {
    try {
      train::check_sp_scheme(name, p);
      schemes.emplace_back(name, p);
    } catch (const Error& e) {
      const std::string why = fmt::format("{} at P={}: {}", name, p, e.what());
      if (std::find(res.skipped.begin(), res.skipped.end(), why) == res.skipped.end())
        res.skipped.push_back(why);
    }
  }
  for (const int64_t n : s.lengths) {
    res.runs.push_back(measurement("single", 1, s.threads > 0 ? s.threads : s.cores, n));
    for (const auto& [name, p] : schemes)
      res.runs.push_back(measurement(name, p, s.threads > 0 ? s.threads : std::max(1, s.cores / p), n));
  }
  std::error_code ec;
  fs::create_directories(s.dir / "train-logs", ec);
  if (ec) bad_input("--out {}: cannot create the folder ({})", s.dir.string(), ec.message());
  const std::string model = s.model.empty() ? "--preset tiny" : "-m " + shell_quote(s.model);
  for (size_t i = 0; i < res.runs.size(); ++i) {
    auto& run = res.runs[i];
    fmt::print(stderr, "[{}/{}] train {} ctx={} ({} rank(s) x {} thread(s)) ...", i + 1, res.runs.size(),
               run.label(), run.ctx, run.ranks, run.threads);
    std::fflush(stderr);
    const auto s0 = std::chrono::steady_clock::now();
    const fs::path log = s.dir / "train-logs" / (file_name(run.label()) + "-ctx" + std::to_string(run.ctx) + ".jsonl");
    std::string cmd = fmt::format(
        "{} train {} --task passkey --ctx {} --batch 1 --steps {} --warmup 1 --eval-examples 1 -q "
        "-t {} --log {}",
        s.launch(run.ranks), model, run.ctx, s.steps, run.threads, shell_quote(log.string()));
    if (run.ranks > 1) cmd += " --sp " + shell_quote(run.strategy);
    if (run.ranks > 1 && s.in_process) cmd += fmt::format(" --ranks {}", run.ranks);
    if (s.checkpoint_layers) cmd += " --checkpoint-layers";
    const Proc p = run_cmd(cmd, s.dir);
    if (p.code != 0) {
      run.ok = false;
      run.error = last_line(p.err);
    } else {
      std::ifstream in(log);
      const std::string text((std::istreambuf_iterator<char>(in)), {});
      try {
        analysis::read_train_log(run, text, log.string());
      } catch (const Error& e) {
        run.ok = false;
        run.error = e.what();
      }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
    if (run.ok)
      fmt::print(stderr, " {:.3f} s/step, peak RSS {:.0f} MiB/rank ({:.1f} s)\n", run.step_seconds,
                 double(run.peak_rss) / double(1 << 20), secs);
    else
      fmt::print(stderr, " failed: {}\n", run.error);
  }
  res.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  analysis::write_train_report(res, s.dir.string());
  if (s.json) {
    fmt::print("{}\n", analysis::to_json(res).dump(2));
  } else {
    fmt::print("training: {} on passkey, batch 1, {} steps per run (the first not timed); P > 1 via "
               "{}; {} core(s); {:.0f} s in all\n\n",
               res.model, res.steps, res.launcher, res.cores, res.wall_seconds);
    fmt::print("{}\n", analysis::train_table(res));
    for (const auto& line : analysis::train_findings(res)) fmt::print("- {}\n", line);
    fmt::print("\nreport: {}\n", (s.dir / "train.html").string());
  }
  bool any_ok = false;
  for (const auto& run : res.runs) any_ok |= run.ok;
  if (!any_ok) fail(ErrorKind::Internal, "compare --train: every run failed (see the table)");
}

}  // namespace tandem::cli
