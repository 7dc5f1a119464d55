// Results of `tandem compare`: parsing the subcommands' output, JSON, the table and the
// crossover analysis.
#include "tandem/analysis/compare.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "tandem/core/error.hpp"

namespace tandem::analysis {

std::string RunMeasurement::label() const {
  if (strategy == "naive" || strategy == "single") return strategy;
  return fmt::format("{} P={}", strategy, ranks);
}

double RunMeasurement::max_rank_seconds() const {
  double s = 0;
  for (const auto& r : per_rank) s = std::max(s, r.seconds);
  return s;
}

double RunMeasurement::peak_kv_activation_bytes() const {
  double b = 0;
  for (const auto& r : per_rank) b = std::max(b, r.kv_bytes + r.activation_bytes);
  return b;
}

double RunMeasurement::weights_bytes() const {
  double b = 0;
  for (const auto& r : per_rank) b = std::max(b, r.weights_bytes);
  return b;
}

double RunMeasurement::bytes_sent_per_rank() const {
  double b = 0;
  for (const auto& r : per_rank) b = std::max(b, r.bytes_sent);
  return b;
}

double RunMeasurement::comm_wait_seconds() const {
  double s = 0;
  for (const auto& r : per_rank) s = std::max(s, r.comm_wait_seconds);
  return s;
}

double RunMeasurement::hidden_fraction() const {
  double sum = 0;
  int n = 0;
  for (const auto& r : per_rank)
    if (r.comm_alone_seconds > 0) sum += r.comm_hidden_fraction, ++n;
  return n ? sum / n : 0;
}

void fill_from_prefill_json(RunMeasurement& run, const nlohmann::json& j) {
  try {
    run.tokens = j.at("tokens").get<int64_t>();
    run.prefill_seconds = j.at("seconds").get<double>();
    run.prefill_tokens_per_s = j.at("tokens_per_s").get<double>();
    run.per_rank.clear();
    for (const auto& r : j.at("per_rank")) {
      RankMeasurement m;
      m.rank = r.at("rank").get<int>();
      m.tokens = r.at("tokens").get<int64_t>();
      m.seconds = r.at("seconds").get<double>();
      m.weights_bytes = r.at("weights_bytes").get<double>();
      m.kv_bytes = r.at("kv_bytes").get<double>();
      m.activation_bytes = r.at("activation_bytes").get<double>();
      m.bytes_sent = r.at("bytes_sent").get<double>();
      m.bytes_received = r.at("bytes_received").get<double>();
      m.comm_wait_seconds = r.at("comm_wait_seconds").get<double>();
      m.comm_alone_seconds = r.value("comm_alone_seconds", 0.0);
      m.comm_hidden_fraction = r.value("comm_hidden_fraction", 0.0);
      run.per_rank.push_back(m);
    }
    run.ok = true;
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Internal, "prefill --json output: {}", e.what());
  }
}

std::optional<double> parse_generation_tokens_per_s(const std::string& text) {
  static const std::regex re(R"(generation: (\d+) tokens, ([0-9.eE+-]+) tokens/s)");
  std::smatch m;
  if (!std::regex_search(text, m, re)) return std::nullopt;
  return std::stod(m[2].str());
}

std::optional<Prediction> prediction_from_plan(const nlohmann::json& plan,
                                               const std::string& strategy) {
  if (strategy == "naive") return std::nullopt;
  std::string want = strategy;
  if (want.rfind("hybrid", 0) == 0) want = "hybrid";
  if (want == "auto") want = "ring";
  if (!plan.contains("strategies")) return std::nullopt;
  for (const auto& s : plan["strategies"]) {
    if (s.value("strategy", "") != want || !s.value("applicable", false)) continue;
    if (!s["prefill_seconds"].is_number()) continue;
    Prediction p;
    p.layout = s.value("layout", want);
    p.prefill_seconds = s["prefill_seconds"].get<double>();
    p.decode_seconds_per_token = s.value("decode_seconds_per_token", 0.0);
    p.memory_bytes_per_device = s.value("memory_bytes_per_device", 0.0);
    p.bytes_communicated_per_device = s.value("bytes_communicated_per_device", 0.0);
    return p;
  }
  return std::nullopt;
}

nlohmann::json to_json(const CompareResults& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["synthetic_model"] = r.synthetic_model;
  j["launcher"] = r.launcher;
  j["launcher_note"] = r.launcher_note;
  j["cores"] = r.cores;
  j["decode_tokens"] = r.decode_tokens;
  j["naive_max"] = r.naive_max;
  j["lengths"] = r.lengths;
  j["wall_seconds"] = r.wall_seconds;
  j["crossover"] = crossover_findings(r);
  j["runs"] = nlohmann::json::array();
  for (const auto& run : r.runs) {
    nlohmann::json x;
    x["label"] = run.label();
    x["strategy"] = run.strategy;
    x["ranks"] = run.ranks;
    x["threads_per_rank"] = run.threads;
    x["tokens"] = run.tokens;
    x["ok"] = run.ok;
    if (!run.ok) x["error"] = run.error;
    x["prefill_seconds"] = run.prefill_seconds;
    x["prefill_tokens_per_s"] = run.prefill_tokens_per_s;
    x["decode_tokens_per_s"] = run.decode_tokens_per_s ? nlohmann::json(*run.decode_tokens_per_s)
                                                       : nlohmann::json(nullptr);
    if (!run.decode_error.empty()) x["decode_error"] = run.decode_error;
    x["peak_kv_activation_bytes_per_rank"] = run.peak_kv_activation_bytes();
    x["weights_bytes_per_rank"] = run.weights_bytes();
    x["bytes_sent_per_rank"] = run.bytes_sent_per_rank();
    x["comm_wait_seconds"] = run.comm_wait_seconds();
    x["comm_hidden_fraction"] = run.hidden_fraction();
    x["per_rank"] = nlohmann::json::array();
    for (const auto& m : run.per_rank)
      x["per_rank"].push_back({{"rank", m.rank},
                               {"tokens", m.tokens},
                               {"seconds", m.seconds},
                               {"weights_bytes", m.weights_bytes},
                               {"kv_bytes", m.kv_bytes},
                               {"activation_bytes", m.activation_bytes},
                               {"bytes_sent", m.bytes_sent},
                               {"bytes_received", m.bytes_received},
                               {"comm_wait_seconds", m.comm_wait_seconds},
                               {"comm_alone_seconds", m.comm_alone_seconds},
                               {"comm_hidden_fraction", m.comm_hidden_fraction}});
    if (run.predicted) {
      const auto& p = *run.predicted;
      x["predicted"] = {{"layout", p.layout},
                        {"prefill_seconds", p.prefill_seconds},
                        {"decode_seconds_per_token", p.decode_seconds_per_token},
                        {"memory_bytes_per_device", p.memory_bytes_per_device},
                        {"bytes_communicated_per_device", p.bytes_communicated_per_device}};
      if (run.ok && run.prefill_seconds > 0)
        x["predicted"]["prefill_error"] = p.prefill_seconds / run.prefill_seconds - 1;
    } else {
      x["predicted"] = nullptr;
    }
    x["trace"] = run.trace_file.empty() ? nlohmann::json(nullptr) : nlohmann::json(run.trace_file);
    j["runs"].push_back(std::move(x));
  }
  return j;
}

namespace {
std::string mib(double b) { return fmt::format("{:.1f}", b / (1 << 20)); }
}  // namespace

std::string compare_table(const CompareResults& r) {
  std::string out = fmt::format(
      "{:<14} {:>5} {:>6} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9} {:>8} {:>6} {:>9} {:>7}\n",
      "strategy", "PxT", "N", "prefill s", "prefill", "decode", "KV+act", "weights", "sent",
      "wait s", "hidden", "plan s", "error");
  out += fmt::format(
      "{:<14} {:>5} {:>6} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9} {:>8} {:>6} {:>9} {:>7}\n", "",
      "", "", "", "tok/s", "tok/s", "MiB/rank", "MiB/rank", "MiB/rank", "", "", "predicted", "");
  for (const auto& run : r.runs) {
    const std::string pxt = fmt::format("{}x{}", run.ranks, run.threads);
    if (!run.ok) {
      out += fmt::format("{:<14} {:>5} {:>6}  failed: {}\n", run.label(), pxt, run.tokens,
                         run.error);
      continue;
    }
    const bool sp = run.ranks > 1;
    std::string plan = "-", err = "-";
    if (run.predicted) {
      plan = fmt::format("{:.4f}", run.predicted->prefill_seconds);
      if (run.prefill_seconds > 0)
        err = fmt::format("{:+.0f}%", 100 * (run.predicted->prefill_seconds / run.prefill_seconds - 1));
    }
    out += fmt::format(
        "{:<14} {:>5} {:>6} {:>9.4f} {:>9.1f} {:>8} {:>9} {:>8} {:>9} {:>8} {:>6} {:>9} {:>7}\n",
        run.label(), pxt, run.tokens, run.prefill_seconds, run.prefill_tokens_per_s,
        run.decode_tokens_per_s ? fmt::format("{:.1f}", *run.decode_tokens_per_s) : "-",
        mib(run.peak_kv_activation_bytes()), mib(run.weights_bytes()),
        sp ? mib(run.bytes_sent_per_rank()) : "-",
        sp ? fmt::format("{:.4f}", run.comm_wait_seconds()) : "-",
        sp ? fmt::format("{:.0f}%", 100 * run.hidden_fraction()) : "-", plan, err);
  }
  return out;
}

std::vector<std::string> crossover_findings(const CompareResults& r) {
  std::vector<std::string> lines;
  std::map<int64_t, const RunMeasurement*> single, naive;
  for (const auto& run : r.runs) {
    if (!run.ok) continue;
    if (run.strategy == "single") single[run.tokens] = &run;
    if (run.strategy == "naive") naive[run.tokens] = &run;
  }
  // Sequential optimization alone: optimized vs naive at the largest N measured by both.
  for (auto it = single.rbegin(); it != single.rend(); ++it) {
    const auto nv = naive.find(it->first);
    if (nv == naive.end() || it->second->prefill_seconds <= 0) continue;
    std::string line = fmt::format(
        "Sequential optimization: at N={} the optimized single pipeline prefills {:.1f}x faster "
        "than the naive one",
        it->first, nv->second->prefill_seconds / it->second->prefill_seconds);
    const auto& a = it->second->decode_tokens_per_s;
    const auto& b = nv->second->decode_tokens_per_s;
    if (a && b && *b > 0) line += fmt::format(" and decodes {:.1f}x faster", *a / *b);
    lines.push_back(line + ".");
    break;
  }
  // Each P-rank scheme against the single optimized pipeline, in the order first run.
  std::vector<std::string> labels;
  for (const auto& run : r.runs)
    if (run.ranks > 1 && std::find(labels.begin(), labels.end(), run.label()) == labels.end())
      labels.push_back(run.label());
  for (const auto& label : labels) {
    std::vector<std::pair<int64_t, double>> ratio;  // (N, single / scheme): > 1 scheme wins
    for (const auto& run : r.runs) {
      if (!run.ok || run.label() != label || run.prefill_seconds <= 0) continue;
      const auto s = single.find(run.tokens);
      if (s == single.end()) continue;
      ratio.emplace_back(run.tokens, s->second->prefill_seconds / run.prefill_seconds);
    }
    if (ratio.empty()) continue;
    std::sort(ratio.begin(), ratio.end());
    // Within 3% counts as level: timings on a shared machine are that noisy.
    constexpr double kLevel = 0.03;
    const auto faster = [&](double x) { return x > 1 + kLevel; };
    const auto level = [&](double x) { return std::abs(x - 1) <= kLevel; };
    // The crossover: the smallest N from which the scheme stays faster.
    std::optional<int64_t> from;
    for (auto it = ratio.rbegin(); it != ratio.rend() && faster(it->second); ++it) from = it->first;
    const auto& last = ratio.back();
    std::string wins;
    for (const auto& [n, x] : ratio)
      if (faster(x)) wins += (wins.empty() ? "" : ", ") + std::to_string(n);
    const std::string also =
        wins.empty() ? "" : "; it was faster (by more than 3%) at N=" + wins;
    if (from && *from == ratio.front().first) {
      lines.push_back(fmt::format("{} beats the single optimized pipeline at every N measured "
                                  "({:.2f}x at N={}).",
                                  label, last.second, last.first));
    } else if (from) {
      lines.push_back(fmt::format("{} beats the single optimized pipeline from N={} on "
                                  "(crossover; {:.2f}x at N={}); below that it is not faster.",
                                  label, *from, last.second, last.first));
    } else if (level(last.second)) {
      lines.push_back(fmt::format("{} is level with the single optimized pipeline at the longest "
                                  "N (N={}: {:.2f}x, within 3%){}.",
                                  label, last.first, last.second, also));
    } else {
      lines.push_back(fmt::format("{} does not beat the single optimized pipeline at the longest "
                                  "N (at N={} it takes {:.2f}x its time){}.",
                                  label, last.first, 1 / last.second,
                                  wins.empty() ? "; it is not faster at any N measured" : also));
    }
  }
  if (!labels.empty())
    lines.push_back(fmt::format(
        "On this machine ({} core(s)) the P ranks run on the same cores as the single "
        "pipeline: P ranks x T threads compete with 1 rank x P*T threads, so no scheme gets "
        "more compute; a win or loss here measures threading versus process efficiency plus "
        "communication, while what sequence parallelism surely buys is KV + activation memory "
        "per rank falling as 1/P (scale).",
        r.cores));
  return lines;
}

}  // namespace tandem::analysis
