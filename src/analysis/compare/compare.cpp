// Results of `tandem compare`: parsing the subcommands' output, JSON and the table (the
// crossover analysis is in compare_crossover.cpp).
#include "tandem/analysis/compare.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

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

double RunMeasurement::peak_rss_bytes() const {
  double b = 0;
  for (const auto& r : per_rank) b = std::max(b, r.peak_rss_bytes / std::max(1.0, r.process_ranks));
  return b;
}

double RunMeasurement::peak_rss_beyond_weights_bytes() const {
  double b = 0;
  for (const auto& r : per_rank)
    if (r.peak_rss_bytes > 0)
      b = std::max(b, (r.peak_rss_bytes - r.baseline_rss_bytes - r.weights_bytes) /
                          std::max(1.0, r.process_ranks));
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
    if (r.comm_transfer_seconds > 0) sum += r.hidden_fraction(), ++n;
  return n ? sum / n : 0;
}

void set_prefill(RunMeasurement& run, const PrefillReport& report) {
  run.tokens = report.tokens;
  run.prefill_seconds = report.seconds;
  run.prefill_tokens_per_s = report.tokens_per_s;
  run.prefill_seconds_each = report.seconds_each;
  run.prefill_first_seconds = report.first_seconds;
  run.per_rank = report.per_rank;
  run.ok = true;
}

RunMeasurement median_of_rounds(std::vector<RunMeasurement> rounds) {
  TD_CHECK(!rounds.empty());
  if (rounds.size() == 1) return std::move(rounds.front());
  std::vector<RunMeasurement::Round> figures;
  std::vector<size_t> ok, decoded;
  for (size_t i = 0; i < rounds.size(); ++i) {
    const RunMeasurement& r = rounds[i];
    figures.push_back({r.ok, r.prefill_seconds, r.decode_tokens_per_s, r.predicted, r.core_rates});
    if (r.ok) ok.push_back(i);
    if (r.ok && r.decode_tokens_per_s) decoded.push_back(i);
  }
  // The median by `faster` (an even count: the faster of the middle two).
  auto median = [](std::vector<size_t> v, auto faster) {
    std::sort(v.begin(), v.end(), [&](size_t a, size_t b) { return faster(a, b) || (!faster(b, a) && a < b); });
    return v[(v.size() - 1) / 2];
  };
  const size_t p = ok.empty() ? 0 : median(ok, [&](size_t a, size_t b) {
    return rounds[a].prefill_seconds < rounds[b].prefill_seconds;
  });
  RunMeasurement row = rounds[p];
  row.prefill_round = int(p);
  row.decode_round = int(p);
  if (!decoded.empty()) {
    const size_t d = median(decoded, [&](size_t a, size_t b) {
      return *rounds[a].decode_tokens_per_s > *rounds[b].decode_tokens_per_s;
    });
    row.decode_round = int(d);
    row.decode_tokens_per_s = rounds[d].decode_tokens_per_s;
    row.decode_error.clear();
  }
  // The row's prediction is the median of its rounds' predictions (each on its own
  // cores), as its measurement is the median of its rounds: a round whose probe caught
  // a spell the run did not see (or the other way round) moves neither median alone.
  if (row.predicted) {
    auto middle = [&](const std::vector<size_t>& of, auto value) {
      std::vector<size_t> with;
      for (size_t i : of)
        if (rounds[i].predicted) with.push_back(i);
      return with.empty() ? std::optional<double>()
                          : value(median(with, [&](size_t a, size_t b) { return value(a) < value(b); }));
    };
    if (auto v = middle(ok, [&](size_t i) { return rounds[i].predicted->prefill_seconds; }))
      row.predicted->prefill_seconds = *v;
    if (auto v = middle(decoded, [&](size_t i) { return rounds[i].predicted->decode_seconds_per_token; }))
      row.predicted->decode_seconds_per_token = *v;
  }
  row.rounds = std::move(figures);
  return row;
}

std::optional<Prediction> predict_run(const PlanRequest& request, const RunMeasurement& run,
                                      std::string* why) {
  if (run.strategy == "naive") return std::nullopt;
  PlanRequest req = request;
  req.tokens = run.tokens;
  req.gpus = run.ranks;
  req.threads = run.threads;  // a device is what one rank uses
  // 0: every rank on one node (this host); compare --links: one rank per emulated host.
  if (req.gpus_per_node <= 0) req.gpus_per_node = run.ranks;
  // The cores as they ran, where the profile holds its curves at one core rate (a shared
  // host's cores change speed by the second).
  if (run.core_rates.size() == size_t(req.hw.threads)) req.hw.core_rates = run.core_rates;
  try {
    const StrategyPlan s = plan_strategy(std::move(req), run.strategy);
    if (!s.applicable) {
      if (why) *why = s.note;
      return std::nullopt;
    }
    return Prediction{s.layout, s.prefill_seconds, s.decode_seconds_per_token, s.memory_bytes,
                      s.bytes_communicated_per_device};
  } catch (const Error& e) {
    if (why) *why = e.what();
    return std::nullopt;
  }
}

nlohmann::json to_json(const CompareResults& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["synthetic_model"] = r.synthetic_model;
  j["launcher"] = r.launcher;
  j["launcher_note"] = r.launcher_note;
  j["cores"] = r.cores;
  j["decode_tokens"] = r.decode_tokens;
  j["rounds"] = r.rounds;
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
    if (!run.prefill_seconds_each.empty()) {
      x["prefill_seconds_each"] = run.prefill_seconds_each;
      x["prefill_first_seconds"] = run.prefill_first_seconds;
    }
    x["decode_tokens_per_s"] = run.decode_tokens_per_s ? nlohmann::json(*run.decode_tokens_per_s)
                                                       : nlohmann::json(nullptr);
    if (!run.decode_error.empty()) x["decode_error"] = run.decode_error;
    x["peak_kv_activation_bytes_per_rank"] = run.peak_kv_activation_bytes();
    x["weights_bytes_per_rank"] = run.weights_bytes();
    x["peak_rss_bytes_per_rank"] = run.peak_rss_bytes();
    x["peak_rss_beyond_weights_bytes_per_rank"] = run.peak_rss_beyond_weights_bytes();
    x["bytes_sent_per_rank"] = run.bytes_sent_per_rank();
    x["comm_wait_seconds"] = run.comm_wait_seconds();
    x["comm_hidden_fraction"] = run.hidden_fraction();
    x["per_rank"] = nlohmann::json::array();
    for (const auto& m : run.per_rank) x["per_rank"].push_back(tandem::to_json(m));
    if (run.predicted) {
      const auto& p = *run.predicted;
      x["predicted"] = {{"layout", p.layout},
                        {"prefill_seconds", p.prefill_seconds},
                        {"decode_seconds_per_token", p.decode_seconds_per_token},
                        {"memory_bytes_per_device", p.memory_bytes_per_device},
                        {"bytes_communicated_per_device", p.bytes_communicated_per_device}};
      if (run.ok && run.prefill_seconds > 0)
        x["predicted"]["prefill_error"] = p.prefill_seconds / run.prefill_seconds - 1;
      if (run.decode_tokens_per_s && *run.decode_tokens_per_s > 0 && p.decode_seconds_per_token > 0)
        x["predicted"]["decode_error"] = 1 / p.decode_seconds_per_token / *run.decode_tokens_per_s - 1;
    } else {
      x["predicted"] = nullptr;
    }
    if (!run.core_rates.empty()) {
      x["core_rates"] = nlohmann::json::array();
      for (const CoreRates& c : run.core_rates) x["core_rates"].push_back(core_rates_to_json(c));
    }
    x["trace"] = run.trace_file.empty() ? nlohmann::json(nullptr) : nlohmann::json(run.trace_file);
    if (!run.rounds.empty()) {
      x["prefill_round"] = run.prefill_round;
      x["decode_round"] = run.decode_round;
      x["rounds"] = nlohmann::json::array();
      for (const auto& rd : run.rounds) {
        nlohmann::json y = {{"ok", rd.ok},
                            {"prefill_seconds", rd.prefill_seconds},
                            {"decode_tokens_per_s", rd.decode_tokens_per_s ? nlohmann::json(*rd.decode_tokens_per_s)
                                                                           : nlohmann::json(nullptr)}};
        y["predicted_prefill_seconds"] = rd.predicted ? nlohmann::json(rd.predicted->prefill_seconds) : nlohmann::json(nullptr);
        y["predicted_decode_seconds_per_token"] =
            rd.predicted ? nlohmann::json(rd.predicted->decode_seconds_per_token) : nlohmann::json(nullptr);
        y["core_rates"] = nlohmann::json::array();
        for (const CoreRates& c : rd.core_rates) y["core_rates"].push_back(core_rates_to_json(c));
        x["rounds"].push_back(std::move(y));
      }
    }
    j["runs"].push_back(std::move(x));
  }
  return j;
}

namespace {
std::string mib(double b) { return fmt::format("{:.1f}", b / (1 << 20)); }
}  // namespace

std::string compare_table(const CompareResults& r) {
  std::string out;
  for (const auto& run : r.runs)
    if (!run.prefill_seconds_each.empty()) {
      const size_t k = run.prefill_seconds_each.size();
      out = k > 1 ? fmt::format("prefill s: the median of {} prefills after an untimed one in the same "
                                "process (results.json: each, and the first)\n", k)
                  : std::string("prefill s: one prefill after an untimed one in the same process "
                                "(results.json: the first too)\n");
      break;
    }
  if (r.rounds > 1)
    out += fmt::format("rounds: every configuration measured {} times, one pass over all after "
                       "another; each row's prefill and decode are the median of its rounds, and "
                       "its predictions the median of theirs, each round predicted on its own cores "
                       "(results.json: rounds)\n",
                       r.rounds);
  if (r.links)
    out += fmt::format("links: {} (P > 1 rows: one emulated host per rank, MPI over TCP through "
                       "tbf; single and naive on one host)\n", r.links->rate);
  // The fastest one-core probe reading of the whole comparison: each row's slowest core
  // against it.
  double fastest = 0;
  for (const auto& run : r.runs)
    for (const CoreRates& c : run.core_rates) fastest = std::max(fastest, c.product);
  if (fastest > 0)
    out += "slow core: the slowest core's speed around the run (a one-thread product on each "
           "core, with every core busy where the run used more than one; results.json "
           "core_rates) over the fastest one-core reading of this comparison; the predictions "
           "are for the cores as they ran\n";
  out += fmt::format(
      "{:<14} {:>5} {:>6} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>6} {:>9} {:>7} {:>8} {:>7} {:>5}\n",
      "strategy", "PxT", "N", "prefill s", "prefill", "decode", "KV+act", "weights", "peak RSS",
      "sent", "wait s", "hidden", "plan s", "error", "plan dec", "error", "slow");
  out += fmt::format(
      "{:<14} {:>5} {:>6} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>6} {:>9} {:>7} {:>8} {:>7} {:>5}\n", "",
      "", "", "", "tok/s", "tok/s", "MiB/rank", "MiB/rank", "MiB/rank", "MiB/rank", "", "",
      "predicted", "", "tok/s", "", "core");
  for (const auto& run : r.runs) {
    const std::string pxt = fmt::format("{}x{}", run.ranks, run.threads);
    if (!run.ok) {
      out += fmt::format("{:<14} {:>5} {:>6}  failed: {}\n", run.label(), pxt, run.tokens,
                         run.error);
      continue;
    }
    const bool sp = run.ranks > 1;
    std::string plan = "-", err = "-", plan_dec = "-", dec_err = "-";
    if (run.predicted) {
      plan = fmt::format("{:.4f}", run.predicted->prefill_seconds);
      if (run.prefill_seconds > 0)
        err = fmt::format("{:+.0f}%", 100 * (run.predicted->prefill_seconds / run.prefill_seconds - 1));
      if (run.predicted->decode_seconds_per_token > 0) {
        const double rate = 1 / run.predicted->decode_seconds_per_token;
        plan_dec = fmt::format("{:.1f}", rate);
        if (run.decode_tokens_per_s && *run.decode_tokens_per_s > 0)
          dec_err = fmt::format("{:+.0f}%", 100 * (rate / *run.decode_tokens_per_s - 1));
      }
    }
    std::string slow = "-";
    if (!run.core_rates.empty() && fastest > 0) {
      const bool busy = run.ranks * run.threads > 1;
      double s = run.core_rates.front().product;
      for (const CoreRates& c : run.core_rates)
        s = std::min(s, busy && c.busy_product > 0 ? c.busy_product : c.product);
      slow = fmt::format("{:.2f}", s / fastest);
    }
    out += fmt::format(
        "{:<14} {:>5} {:>6} {:>9.4f} {:>9.1f} {:>8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>6} {:>9} {:>7} {:>8} {:>7} {:>5}\n",
        run.label(), pxt, run.tokens, run.prefill_seconds, run.prefill_tokens_per_s,
        run.decode_tokens_per_s ? fmt::format("{:.1f}", *run.decode_tokens_per_s) : "-",
        mib(run.peak_kv_activation_bytes()), mib(run.weights_bytes()),
        run.peak_rss_bytes() > 0 ? mib(run.peak_rss_bytes()) : "-",
        sp ? mib(run.bytes_sent_per_rank()) : "-",
        sp ? fmt::format("{:.4f}", run.comm_wait_seconds()) : "-",
        sp ? fmt::format("{:.0f}%", 100 * run.hidden_fraction()) : "-", plan, err, plan_dec, dec_err,
        slow);
  }
  return out;
}

}  // namespace tandem::analysis
