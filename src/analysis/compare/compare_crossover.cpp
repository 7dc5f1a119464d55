// The crossover analysis of `tandem compare`: where each P-rank scheme starts to beat the
// single optimized pipeline, as data (results.json, index.html), as lines under the table
// and as the sentences of the findings.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "tandem/analysis/compare.hpp"

namespace tandem::analysis {
namespace {

bool faster(double x) { return x > 1 + kLevelFraction; }
bool level(double x) { return std::abs(x - 1) <= kLevelFraction; }

std::map<int64_t, const RunMeasurement*> by_tokens(const CompareResults& r, const std::string& s) {
  std::map<int64_t, const RunMeasurement*> m;
  for (const auto& run : r.runs)
    if (run.ok && run.strategy == s) m[run.tokens] = &run;
  return m;
}

}  // namespace

std::string Crossover::summary() const {
  if (speedup.empty()) return "not measured (no successful run next to single)";
  const auto& last = speedup.back();
  if (from_tokens)
    return fmt::format("N >= {} ({:.2f}x single's speed at N={})", *from_tokens, last.second,
                       last.first);
  return fmt::format("none in the measured range (N = {}..{}; {:.2f}x single's speed at N={})",
                     speedup.front().first, last.first, last.second, last.first);
}

std::vector<Crossover> crossovers(const CompareResults& r) {
  const auto single = by_tokens(r, "single");
  std::vector<Crossover> out;
  for (const auto& run : r.runs) {
    if (run.ranks <= 1) continue;
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const Crossover& c) { return c.label == run.label(); });
    if (it == out.end()) {
      out.push_back({run.label(), {}, {}});
      it = out.end() - 1;
    }
    const auto s = single.find(run.tokens);
    if (run.ok && run.prefill_seconds > 0 && s != single.end())
      it->speedup.emplace_back(run.tokens, s->second->prefill_seconds / run.prefill_seconds);
  }
  for (auto& c : out) c = make_crossover(c.label, c.speedup);
  return out;
}

Crossover make_crossover(std::string label, std::vector<std::pair<int64_t, double>> speedup) {
  Crossover c{std::move(label), std::move(speedup), {}};
  std::sort(c.speedup.begin(), c.speedup.end());
  // From the longest N down, while the scheme stays faster.
  for (auto it = c.speedup.rbegin(); it != c.speedup.rend() && faster(it->second); ++it)
    c.from_tokens = it->first;
  return c;
}

std::string crossover_table(const CompareResults& r) {
  const auto all = crossovers(r);
  std::string out;
  if (r.links) {
    out += fmt::format("P > 1 ranks on emulated hosts linked at {}", r.links->rate);
    if (r.links->measured_bandwidth > 0)
      out += fmt::format(" (measured MPI ping-pong {:.2f} Gbit/s, {:.0f} us one way)",
                         r.links->measured_bandwidth * 8 / 1e9, r.links->measured_latency * 1e6);
    out += "; the single and naive pipelines run on one host.\n";
  }
  if (all.empty()) return out;
  out += fmt::format("crossover (smallest measured N from which the scheme's prefill beats single "
                     "by more than {:.0f}%{}):\n",
                     100 * kLevelFraction, r.links ? fmt::format(", links {}", r.links->rate) : "");
  size_t width = 0;
  for (const auto& c : all) width = std::max(width, c.label.size());
  for (const auto& c : all) out += fmt::format("  {:<{}}  {}\n", c.label, width, c.summary());
  return out;
}

namespace {
// Measured memory: each P-rank run's peak RSS per rank beyond the weights and the runtime
// baseline, against the single pipeline's at the same N (the largest N both ran), beside
// the 1/P that the accounting would suggest.
void memory_findings(const CompareResults& r, std::vector<std::string>& lines) {
  std::map<std::string, std::pair<const RunMeasurement*, const RunMeasurement*>> best;  // label
  for (const auto& run : r.runs) {
    if (!run.ok || run.ranks < 2 || run.peak_rss_beyond_weights_bytes() <= 0) continue;
    for (const auto& single : r.runs) {
      if (single.strategy != "single" || !single.ok || single.tokens != run.tokens ||
          single.peak_rss_beyond_weights_bytes() <= 0)
        continue;
      auto& b = best[run.label()];
      if (!b.first || run.tokens > b.first->tokens) b = {&run, &single};
    }
  }
  bool any_sp = false;
  for (const auto& run : r.runs) any_sp = any_sp || (run.ok && run.ranks > 1);
  if (best.empty()) {
    if (any_sp)
      lines.push_back("Memory per rank was not measured against the single pipeline (no peak "
                      "resident set reading); the KV + activation columns are accounting only.");
    return;
  }
  for (const auto& [label, b] : best) {
    const double mine = b.first->peak_rss_beyond_weights_bytes(),
                 one = b.second->peak_rss_beyond_weights_bytes(), ratio = mine / one;
    lines.push_back(fmt::format(
        "Memory, measured: at N={} {} holds {:.1f} MiB per rank beyond the weights and the "
        "runtime baseline (peak RSS), {:.2f}x the single pipeline's {:.1f} MiB{} (1/P = {:.2f}).",
        b.first->tokens, label, mine / double(1 << 20), ratio, one / double(1 << 20),
        ratio >= 1 ? ": no saving" : "", 1.0 / b.first->ranks));
  }
}
}  // namespace

std::vector<std::string> crossover_findings(const CompareResults& r) {
  std::vector<std::string> lines;
  const auto single = by_tokens(r, "single");
  const auto naive = by_tokens(r, "naive");
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
  const std::string over = r.links ? fmt::format(" over {} links", r.links->rate) : "";
  const auto all = crossovers(r);
  for (const auto& c : all) {
    if (c.speedup.empty()) continue;
    const auto& last = c.speedup.back();
    std::string wins;
    for (const auto& [n, x] : c.speedup)
      if (faster(x)) wins += (wins.empty() ? "" : ", ") + std::to_string(n);
    const std::string also = wins.empty() ? "" : "; it was faster (by more than 3%) at N=" + wins;
    if (c.from_tokens && *c.from_tokens == c.speedup.front().first) {
      lines.push_back(fmt::format("{}{} beats the single optimized pipeline at every N measured "
                                  "({:.2f}x at N={}).",
                                  c.label, over, last.second, last.first));
    } else if (c.from_tokens) {
      lines.push_back(fmt::format("{}{} beats the single optimized pipeline from N={} on "
                                  "(crossover; {:.2f}x at N={}); below that it is not faster.",
                                  c.label, over, *c.from_tokens, last.second, last.first));
    } else if (level(last.second)) {
      lines.push_back(fmt::format("{}{} is level with the single optimized pipeline at the longest "
                                  "N (N={}: {:.2f}x, within 3%){}.",
                                  c.label, over, last.first, last.second, also));
    } else {
      lines.push_back(fmt::format("{}{} does not beat the single optimized pipeline at the longest "
                                  "N (at N={} it takes {:.2f}x its time){}.",
                                  c.label, over, last.first, 1 / last.second,
                                  wins.empty() ? "; it is not faster at any N measured" : also));
    }
  }
  // Threads of the single pipeline against P ranks x T threads (the first of each).
  int single_threads = 0, sp_threads = 0;
  for (const auto& run : r.runs) {
    if (run.strategy == "single" && !single_threads) single_threads = run.threads;
    if (run.ranks > 1 && !sp_threads) sp_threads = run.ranks * run.threads;
  }
  if (!all.empty() && single_threads && sp_threads && single_threads != sp_threads)
    lines.push_back(fmt::format(
        "The single pipeline ran with {} thread(s), the P ranks with {} thread(s) in all, on {} "
        "core(s): a win or loss here mixes compute given to each side with communication{}; "
        "what sequence parallelism buys in memory per rank is measured below.",
        single_threads, sp_threads, r.cores,
        r.links ? fmt::format(" (here over emulated {} links)", r.links->rate) : ""));
  else if (!all.empty())
    lines.push_back(fmt::format(
        "On this machine ({} core(s)) the P ranks run on the same cores as the single "
        "pipeline: P ranks x T threads compete with 1 rank x P*T threads, so no scheme gets "
        "more compute; a win or loss here measures threading versus process efficiency plus "
        "communication{}; what sequence parallelism buys in memory per rank is measured below.",
        r.cores, r.links ? fmt::format(" (here over emulated {} links)", r.links->rate) : ""));
  memory_findings(r, lines);
  return lines;
}

}  // namespace tandem::analysis
