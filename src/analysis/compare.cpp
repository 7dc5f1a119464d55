// Results of `tandem compare`: parsing the subcommands' output, JSON and the table (the
// crossover analysis is in compare_crossover.cpp).
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
  j["planner_hardware"] = r.planner_hardware;
  j["lengths"] = r.lengths;
  j["wall_seconds"] = r.wall_seconds;
  j["crossover"] = crossover_findings(r);
  if (r.links) {
    const auto& l = *r.links;
    j["links"] = {{"rate", l.rate},
                  {"bits_per_second", l.bits_per_second},
                  {"description", l.description},
                  {"namespaces", l.namespaces},
                  {"measured_bandwidth_bytes_per_s",
                   l.measured_bandwidth > 0 ? nlohmann::json(l.measured_bandwidth) : nlohmann::json(nullptr)},
                  {"measured_latency_s",
                   l.measured_bandwidth > 0 ? nlohmann::json(l.measured_latency) : nlohmann::json(nullptr)}};
  } else {
    j["links"] = nullptr;
  }
  j["crossovers"] = nlohmann::json::array();
  for (const auto& c : crossovers(r)) {
    nlohmann::json x = {{"label", c.label},
                        {"from_tokens", c.from_tokens ? nlohmann::json(*c.from_tokens) : nlohmann::json(nullptr)},
                        {"summary", c.summary()},
                        {"speedup", nlohmann::json::array()}};
    for (const auto& [n, s] : c.speedup) x["speedup"].push_back({{"tokens", n}, {"single_over_scheme", s}});
    j["crossovers"].push_back(std::move(x));
  }
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
  std::string out;
  if (r.links)
    out = fmt::format("links: {} (P > 1 rows: one emulated host per rank, MPI over TCP through "
                      "tbf; single and naive on one host)\n", r.links->rate);
  out += fmt::format(
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

}  // namespace tandem::analysis
