// `tandem compare --train`: the training runs' logs read into measurements, the table, the
// findings (where parallel training pays, memory per rank, agreement of the losses) and
// the report files.
#include "tandem/analysis/compare_train.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tandem/analysis/report.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/size.hpp"

namespace tandem::analysis {
namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const TrainMeasurement* single_at(const TrainComparison& r, int64_t ctx) {
  for (const auto& run : r.runs)
    if (run.ok && run.ranks == 1 && run.ctx == ctx) return &run;
  return nullptr;
}

double mib(uint64_t b) { return double(b) / double(1 << 20); }

}  // namespace

std::string TrainMeasurement::label() const {
  return ranks > 1 ? fmt::format("{} P={}", strategy, ranks) : strategy;
}

void read_train_log(TrainMeasurement& m, const std::string& jsonl, const std::string& what) {
  std::stringstream ss(jsonl);
  std::string line;
  std::vector<double> secs, util, attn, red, wait;
  m.losses.clear();
  m.steps = 0;
  int64_t lineno = 0;
  while (std::getline(ss, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
      const double s = j.at("seconds").get<double>();
      m.losses.push_back(j.at("loss").get<double>());
      m.peak_rss = std::max(m.peak_rss, j.value("peak_rss", uint64_t{0}));
      m.activation_bytes = j.value("activation_bytes", m.activation_bytes);
      if (++m.steps == 1) continue;  // the first step warms caches and pages: not timed
      secs.push_back(s);
      util.push_back(j.value("flop_utilization", 0.0));
      attn.push_back(j.value("attention_bytes", 0.0));
      red.push_back(j.value("allreduce_bytes", 0.0));
      wait.push_back(j.value("comm_wait_seconds", 0.0));
    } catch (const std::exception& e) {
      bad_input("{}: line {}: not a training log line ({})", what, lineno, e.what());
    }
  }
  if (m.steps == 0) bad_input("{}: no steps logged", what);
  if (secs.empty()) {  // one step only: time it anyway
    secs.push_back(nlohmann::json::parse(jsonl.substr(0, jsonl.find('\n'))).at("seconds").get<double>());
  }
  m.step_seconds = median(secs);
  m.tokens_per_s = m.step_seconds > 0 ? double(m.ctx) / m.step_seconds : 0.0;
  m.flop_utilization = median(util);
  m.attention_bytes = uint64_t(median(attn));
  m.allreduce_bytes = uint64_t(median(red));
  m.comm_wait_seconds = median(wait);
  m.ok = true;
}

std::vector<Crossover> train_crossovers(const TrainComparison& r) {
  std::vector<std::string> labels;
  std::map<std::string, std::vector<std::pair<int64_t, double>>> speedups;
  for (const auto& run : r.runs) {
    if (run.ranks <= 1) continue;
    if (std::find(labels.begin(), labels.end(), run.label()) == labels.end()) labels.push_back(run.label());
    const TrainMeasurement* one = single_at(r, run.ctx);
    if (run.ok && one && run.step_seconds > 0)
      speedups[run.label()].emplace_back(run.ctx, one->step_seconds / run.step_seconds);
  }
  std::vector<Crossover> out;
  for (const auto& l : labels) out.push_back(make_crossover(l, speedups[l]));
  return out;
}

double loss_difference(const TrainComparison& r, const TrainMeasurement& run) {
  const TrainMeasurement* one = single_at(r, run.ctx);
  if (!run.ok || !one || one->losses.size() != run.losses.size() || run.losses.empty()) return -1.0;
  double d = 0.0;
  for (size_t i = 0; i < run.losses.size(); ++i) d = std::max(d, std::abs(run.losses[i] - one->losses[i]));
  return d;
}

std::string train_table(const TrainComparison& r) {
  std::string out = fmt::format("{:<16} {:>7} {:>8} {:>9} {:>9} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9}\n",
                                "strategy", "ctx", "threads", "step s", "tok/s", "FLOP%", "speedup",
                                "RSS/rank", "act/rank", "comm/step", "wait s");
  for (const auto& run : r.runs) {
    if (!run.ok) {
      out += fmt::format("{:<16} {:>7} {:>8}  failed: {}\n", run.label(), run.ctx,
                         fmt::format("{}x{}", run.ranks, run.threads), run.error);
      continue;
    }
    const TrainMeasurement* one = single_at(r, run.ctx);
    const std::string speed = one && run.step_seconds > 0
                                  ? fmt::format("{:.2f}x", one->step_seconds / run.step_seconds)
                                  : "-";
    out += fmt::format("{:<16} {:>7} {:>8} {:>9.3f} {:>9.0f} {:>6.1f} {:>10} {:>10} {:>10} {:>10} {:>9.3f}\n",
                       run.label(), run.ctx, fmt::format("{}x{}", run.ranks, run.threads),
                       run.step_seconds, run.tokens_per_s, 100.0 * run.flop_utilization, speed,
                       format_size(double(run.peak_rss)), format_size(double(run.activation_bytes)),
                       format_size(double(run.attention_bytes + run.allreduce_bytes)),
                       run.comm_wait_seconds);
  }
  return out;
}

std::vector<std::string> train_findings(const TrainComparison& r) {
  std::vector<std::string> lines;
  for (const auto& c : train_crossovers(r)) {
    if (c.speedup.empty()) {
      lines.push_back(c.label + ": no successful run next to the one-rank run.");
      continue;
    }
    lines.push_back(fmt::format("{} trains faster than one rank: {}.", c.label, c.summary()));
  }
  // Memory: at the longest ctx each scheme ran, its peak RSS and planned activations per
  // rank against the one-rank run's.
  std::map<std::string, const TrainMeasurement*> longest;
  for (const auto& run : r.runs)
    if (run.ok && run.ranks > 1 && single_at(r, run.ctx) &&
        (!longest.count(run.label()) || run.ctx > longest[run.label()]->ctx))
      longest[run.label()] = &run;
  for (const auto& [label, run] : longest) {
    const TrainMeasurement* one = single_at(r, run->ctx);
    lines.push_back(fmt::format(
        "Memory at ctx {}: {} holds {:.0f} MiB peak RSS per rank against {:.0f} MiB on one rank "
        "({:.2f}x); activations per rank (plan) {:.1f} MiB against {:.1f} MiB ({:.2f}x; 1/P = {:.2f}).",
        run->ctx, label, mib(run->peak_rss), mib(one->peak_rss),
        one->peak_rss ? double(run->peak_rss) / double(one->peak_rss) : 0.0, mib(run->activation_bytes),
        mib(one->activation_bytes),
        one->activation_bytes ? double(run->activation_bytes) / double(one->activation_bytes) : 0.0,
        1.0 / run->ranks));
  }
  double worst = -1.0;
  std::string worst_label;
  for (const auto& run : r.runs) {
    const double d = run.ranks > 1 ? loss_difference(r, run) : -1.0;
    if (d > worst) worst = d, worst_label = fmt::format("{} at ctx {}", run.label(), run.ctx);
  }
  if (worst >= 0)
    lines.push_back(fmt::format("Every scheme trained the same model: per-step losses within {:.1e} of "
                                "the one-rank run's (largest: {}).",
                                worst, worst_label));
  int one_threads = 0, p_threads = 0;
  for (const auto& run : r.runs) {
    if (run.ranks == 1 && !one_threads) one_threads = run.threads;
    if (run.ranks > 1 && !p_threads) p_threads = run.ranks * run.threads;
  }
  if (one_threads && p_threads && one_threads == p_threads)
    lines.push_back(fmt::format("All runs share this machine's {} core(s): P ranks x T threads against one "
                                "rank x P*T threads, so a speedup measures process against thread "
                                "efficiency plus communication, and the memory per rank is what "
                                "sequence parallelism buys.",
                                r.cores));
  for (const auto& s : r.skipped) lines.push_back("Skipped: " + s + ".");
  return lines;
}

nlohmann::json to_json(const TrainComparison& r) {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& m : r.runs) {
    nlohmann::json j = {{"strategy", m.strategy}, {"label", m.label()}, {"ranks", m.ranks},
                        {"threads", m.threads},   {"ctx", m.ctx},       {"ok", m.ok}};
    if (!m.ok) {
      j["error"] = m.error;
    } else {
      j.update({{"steps", m.steps},
                {"step_seconds", m.step_seconds},
                {"tokens_per_s", m.tokens_per_s},
                {"flop_utilization", m.flop_utilization},
                {"peak_rss_bytes", m.peak_rss},
                {"activation_bytes", m.activation_bytes},
                {"attention_bytes_per_step", m.attention_bytes},
                {"allreduce_bytes_per_step", m.allreduce_bytes},
                {"comm_wait_seconds", m.comm_wait_seconds},
                {"losses", m.losses}});
      const double d = loss_difference(r, m);
      if (m.ranks > 1 && d >= 0) j["loss_difference"] = d;
    }
    runs.push_back(j);
  }
  nlohmann::json cross = nlohmann::json::array();
  for (const auto& c : train_crossovers(r)) {
    nlohmann::json s = nlohmann::json::array();
    for (const auto& [n, x] : c.speedup) s.push_back({{"ctx", n}, {"speedup", x}});
    cross.push_back({{"label", c.label}, {"speedup", s}, {"summary", c.summary()}});
    if (c.from_tokens) cross.back()["from_ctx"] = *c.from_tokens;
  }
  return {{"workload", "train"},      {"model", r.model},
          {"task", r.task},           {"launcher", r.launcher},
          {"cores", r.cores},         {"steps", r.steps},
          {"checkpoint_layers", r.checkpoint_layers},
          {"lengths", r.lengths},     {"skipped", r.skipped},
          {"runs", runs},             {"crossovers", cross},
          {"findings", train_findings(r)}, {"wall_seconds", r.wall_seconds}};
}

namespace {

template <typename F>
std::vector<Series> train_series(const TrainComparison& r, F y) {
  std::vector<Series> out;
  for (const auto& run : r.runs) {
    if (!run.ok || y(run) <= 0) continue;
    auto it = std::find_if(out.begin(), out.end(), [&](const Series& s) { return s.name == run.label(); });
    if (it == out.end()) {
      out.push_back(Series{run.label(), {}, "", "", true, 3.5});
      it = out.end() - 1;
    }
    it->points.emplace_back(double(run.ctx), y(run));
  }
  return out;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) bad_input("--out: cannot write {}", path.string());
}

}  // namespace

std::vector<std::string> write_train_report(const TrainComparison& r, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) bad_input("--out {}: cannot create the folder ({})", dir, ec.message());
  LinePlot step;
  step.title = "training step time (forward + backward + AdamW), batch 1";
  step.x_label = "ctx (tokens per sequence)";
  step.y_label = "seconds per step (median)";
  for (int64_t n : r.lengths) step.x_ticks.push_back(double(n));
  step.series = train_series(r, [](const TrainMeasurement& m) { return m.step_seconds; });
  LinePlot mem = step;
  mem.title = "memory per rank while training";
  mem.y_label = "MiB";
  mem.series.clear();
  for (Series s : train_series(r, [](const TrainMeasurement& m) { return mib(m.peak_rss); })) {
    s.name += " (peak RSS)";
    mem.series.push_back(s);
  }
  const size_t measured = mem.series.size();
  for (Series s : train_series(r, [](const TrainMeasurement& m) { return mib(m.activation_bytes); })) {
    s.name += " (activations, plan)";
    s.dash = "6 4";
    mem.series.push_back(s);
  }
  for (size_t i = measured; i < mem.series.size(); ++i) mem.series[i].color = palette(i - measured);
  const std::string step_svg = line_plot_svg(step), mem_svg = line_plot_svg(mem);
  write_file(fs::path(dir) / "train.json", to_json(r).dump(2) + "\n");
  write_file(fs::path(dir) / "train_step.svg", step_svg);
  write_file(fs::path(dir) / "train_memory.svg", mem_svg);
  std::string findings;
  for (const auto& l : train_findings(r)) findings += "<li>" + xml_escape(l) + "</li>";
  const std::string body = fmt::format(
      "<h1>tandem compare --train</h1><p>{} on the {} task, {} step(s) per run (the first not "
      "timed), P &gt; 1 via {}, {} core(s){}.</p><ul>{}</ul>{}{}<pre>{}</pre>",
      xml_escape(r.model), xml_escape(r.task), r.steps, xml_escape(r.launcher), r.cores,
      r.checkpoint_layers ? ", layers checkpointed" : "", findings, step_svg, mem_svg,
      xml_escape(train_table(r)));
  write_file(fs::path(dir) / "train.html", html_page("tandem compare --train", body));
  return {"train.json", "train_step.svg", "train_memory.svg", "train.html"};
}

}  // namespace tandem::analysis
