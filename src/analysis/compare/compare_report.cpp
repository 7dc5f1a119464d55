// The report folder of `tandem compare`: results.json, SVG plots and index.html.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tandem/analysis/compare.hpp"
#include "tandem/analysis/report.hpp"
#include "tandem/core/error.hpp"

namespace tandem::analysis {
namespace {

namespace fs = std::filesystem;

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) fail(ErrorKind::BadInput, "--out: cannot write {}", path.string());
}

// Labels in the order first run (naive, single, then the schemes).
std::vector<std::string> labels_of(const CompareResults& r) {
  std::vector<std::string> labels;
  for (const auto& run : r.runs)
    if (std::find(labels.begin(), labels.end(), run.label()) == labels.end())
      labels.push_back(run.label());
  return labels;
}

// One series per label of y(run) over N, from the successful runs; naive dotted.
template <typename F>
std::vector<Series> series_of(const CompareResults& r, F y) {
  std::vector<Series> out;
  for (const auto& label : labels_of(r)) {
    Series s;
    s.name = label;
    if (label == "naive") s.dash = "2 3";
    for (const auto& run : r.runs)
      if (run.ok && run.label() == label) {
        const double v = y(run);
        if (v > 0) s.points.emplace_back(double(run.tokens), v);
      }
    if (!s.points.empty()) out.push_back(std::move(s));
  }
  return out;
}

constexpr const char* kPredictedDash = "6 4";

// Beside each measured series, the planner's prediction predicted(run) (0: none) of its
// successful runs as a dashed line of the same colour, and a legend note when any is drawn.
template <typename F>
void add_predictions(LinePlot& p, const CompareResults& r, F predicted) {
  const size_t measured = p.series.size();
  for (size_t i = 0; i < measured; ++i) {
    Series s;
    s.name = p.series[i].name + ", predicted";
    s.dash = kPredictedDash;
    s.color = palette(i);
    s.in_legend = false;
    s.marker = 2.5;
    for (const auto& run : r.runs)
      if (run.ok && run.predicted && run.label() == p.series[i].name) {
        const double v = predicted(*run.predicted);
        if (v > 0) s.points.emplace_back(double(run.tokens), v);
      }
    if (!s.points.empty()) p.series.push_back(std::move(s));
  }
  if (p.series.size() > measured) p.notes.push_back({kPredictedDash, "dashed: predicted by the planner"});
}

std::vector<double> lengths_as_ticks(const CompareResults& r) {
  std::vector<double> t(r.lengths.begin(), r.lengths.end());
  std::sort(t.begin(), t.end());
  t.erase(std::unique(t.begin(), t.end()), t.end());
  return t;
}

std::string latency_svg(const CompareResults& r) {
  LinePlot p;
  p.title = "Prefill latency vs sequence length";
  p.x_label = "N (tokens)";
  p.y_label = "prefill seconds";
  p.x_ticks = lengths_as_ticks(r);
  p.series = series_of(r, [](const RunMeasurement& m) { return m.prefill_seconds; });
  add_predictions(p, r, [](const Prediction& x) { return x.prefill_seconds; });
  return line_plot_svg(p);
}

std::string decode_svg(const CompareResults& r) {
  LinePlot p;
  p.title = "Decode throughput vs prompt length";
  p.x_label = "N (prompt tokens)";
  p.y_label = "decode tokens/s";
  p.x_ticks = lengths_as_ticks(r);
  p.series = series_of(r, [](const RunMeasurement& m) { return m.decode_tokens_per_s.value_or(0); });
  add_predictions(p, r, [](const Prediction& x) {
    return x.decode_seconds_per_token > 0 ? 1 / x.decode_seconds_per_token : 0.0;
  });
  return line_plot_svg(p);
}

// MiB per rank vs N, one line per strategy.
template <class Bytes>
std::string memory_plot(const CompareResults& r, std::string title, Bytes bytes) {
  LinePlot p;
  p.title = std::move(title);
  p.x_label = "N (tokens)";
  p.y_label = "MiB per rank";
  p.x_ticks = lengths_as_ticks(r);
  p.series = series_of(r, [&](const RunMeasurement& m) { return bytes(m) / double(1 << 20); });
  return line_plot_svg(p);
}

std::string memory_svg(const CompareResults& r) {
  return memory_plot(r, "Peak KV + activation memory per rank",
                     [](const RunMeasurement& m) { return m.peak_kv_activation_bytes(); });
}

std::string memory_rss_svg(const CompareResults& r) {
  return memory_plot(r, "Measured peak RSS per rank, less weights and runtime baseline",
                     [](const RunMeasurement& m) { return std::max(0.0, m.peak_rss_beyond_weights_bytes()); });
}

// Compute / communication wait / idle per rank at the largest N with a successful run.
std::string split_svg(const CompareResults& r, int64_t& n_out) {
  n_out = 0;
  for (const auto& run : r.runs)
    if (run.ok && run.strategy != "naive") n_out = std::max(n_out, run.tokens);
  BarPlot p;
  p.title = fmt::format("Where each rank's prefill time goes (N={})", n_out);
  p.y_label = "seconds";
  p.part_names = {"compute", "communication wait", "idle (slowest rank)"};
  p.part_colors = {"#4c78a8", "#e45756", "#c9c9c9"};
  for (const auto& run : r.runs) {
    if (!run.ok || run.tokens != n_out || run.strategy == "naive") continue;
    const double slowest = run.max_rank_seconds();
    for (const auto& m : run.per_rank) {
      StackedBar b;
      b.group = run.label();
      b.label = run.ranks > 1 ? fmt::format("r{}", m.rank) : "all";
      const double wait = std::min(m.comm_wait_seconds, m.seconds);
      b.parts = {m.seconds - wait, wait, slowest - m.seconds};
      p.bars.push_back(std::move(b));
    }
  }
  return stacked_bar_svg(p);
}

std::string cell(const std::string& s, bool left = false) {
  return std::string(left ? "<td class=\"l\">" : "<td>") + xml_escape(s) + "</td>";
}

std::string html_table(const CompareResults& r) {
  std::string t =
      "<div class=\"wide\"><table>\n<tr><th class=\"l\">strategy</th><th>P x T</th><th>N</th><th>prefill s</th>"
      "<th>prefill tok/s</th><th>decode tok/s</th><th>KV + act. MiB/rank</th>"
      "<th>weights MiB/rank</th><th>peak RSS MiB/rank</th><th>sent MiB/rank</th><th>comm wait s</th><th>hidden</th>"
      "<th>planner prefill s</th><th>planner error</th><th class=\"l\">trace</th></tr>\n";
  const auto mib = [](double b) { return fmt::format("{:.1f}", b / double(1 << 20)); };
  for (const auto& run : r.runs) {
    const std::string cls = run.strategy == "naive" || run.strategy == "single" ? run.strategy : "sp";
    t += "<tr class=\"" + cls + "\">" + cell(run.label(), true) +
         cell(fmt::format("{} x {}", run.ranks, run.threads)) + cell(std::to_string(run.tokens));
    if (!run.ok) {
      t += "<td class=\"l\" colspan=\"12\">failed: " + xml_escape(run.error) + "</td></tr>\n";
      continue;
    }
    const bool sp = run.ranks > 1;
    t += cell(fmt::format("{:.4f}", run.prefill_seconds)) +
         cell(fmt::format("{:.1f}", run.prefill_tokens_per_s)) +
         cell(run.decode_tokens_per_s ? fmt::format("{:.1f}", *run.decode_tokens_per_s)
                                      : run.decode_error.empty() ? "-" : "failed") +
         cell(mib(run.peak_kv_activation_bytes())) + cell(mib(run.weights_bytes())) +
         cell(run.peak_rss_bytes() > 0 ? mib(run.peak_rss_bytes()) : "-") +
         cell(sp ? mib(run.bytes_sent_per_rank()) : "-") +
         cell(sp ? fmt::format("{:.4f}", run.comm_wait_seconds()) : "-") +
         cell(sp ? fmt::format("{:.0f}%", 100 * run.hidden_fraction()) : "-");
    if (run.predicted) {
      t += cell(fmt::format("{:.4f}", run.predicted->prefill_seconds));
      t += cell(run.prefill_seconds > 0
                    ? fmt::format("{:+.0f}%", 100 * (run.predicted->prefill_seconds / run.prefill_seconds - 1))
                    : "-");
    } else {
      t += cell("-") + cell("-");
    }
    t += run.trace_file.empty()
             ? cell("-", true)
             : "<td class=\"l\"><a href=\"" + xml_escape(run.trace_file) + "\">trace</a></td>";
    t += "</tr>\n";
  }
  return t + "</table></div>\n";
}

// The links setting (with --links) and the crossover of each scheme.
std::string links_html(const CompareResults& r) {
  std::string b;
  if (r.links) {
    const auto& l = *r.links;
    b += fmt::format("<p><b>Links: {}</b> — {}.", xml_escape(l.rate), xml_escape(l.description));
    if (l.measured_bandwidth > 0)
      b += fmt::format(" Measured across one link (MPI ping-pong): {:.2f} Gbit/s, {:.0f} us one way.",
                       l.measured_bandwidth * 8 / 1e9, l.measured_latency * 1e6);
    b += " The single and naive pipelines run on one host. The planner column uses "
         "<a href=\"links-profile.json\">links-profile.json</a>: <code>cpu-this</code> with one "
         "rank per node and the measured link between nodes.</p>\n";
  }
  const auto all = crossovers(r);
  if (all.empty()) return b;
  b += fmt::format("<h2>Crossover{}</h2>\n<p>The smallest measured N from which each scheme's "
                   "prefill is faster than the single optimized pipeline's (by more than {:.0f}%, "
                   "at that N and every longer one); below it P ranks lose to one pipeline. The columns "
                   "give single's prefill time over the scheme's: above 1 the scheme is faster.</p>\n"
                   "<table>\n<tr><th class=\"l\">scheme</th><th class=\"l\">crossover</th>",
                   r.links ? " over " + xml_escape(r.links->rate) + " links" : "", 100 * kLevelFraction);
  for (const auto n : lengths_as_ticks(r)) b += fmt::format("<th>single / scheme at N={}</th>", n);
  b += "</tr>\n";
  for (const auto& c : all) {
    b += "<tr class=\"sp\">" + cell(c.label, true) +
         cell(c.from_tokens ? "N >= " + std::to_string(*c.from_tokens) : "none in the measured range", true);
    for (const auto n : lengths_as_ticks(r)) {
      const auto it = std::find_if(c.speedup.begin(), c.speedup.end(),
                                   [&](const auto& p) { return double(p.first) == n; });
      b += cell(it == c.speedup.end() ? "-" : fmt::format("{:.2f}x", it->second));
    }
    b += "</tr>\n";
  }
  return b + "</table>\n";
}

using Figures = std::vector<std::pair<std::string, std::string>>;  // (caption, svg)

std::string index_html(const CompareResults& r, const Figures& plots, const Figures& timelines,
                       int64_t split_n) {
  std::string b = "<h1>tandem compare</h1>\n<p>";
  b += fmt::format("Model <code>{}</code>{}; sequence lengths N = ", xml_escape(r.model),
                   r.synthetic_model ? " (tiny synthetic model, F16)" : "");
  for (size_t i = 0; i < r.lengths.size(); ++i) b += (i ? ", " : "") + std::to_string(r.lengths[i]);
  b += fmt::format("; {} decode tokens after each prompt; {} core(s). P &gt; 1 runs use <b>{}</b> "
                   "({}).{} All runs took {:.0f} s.</p>\n",
                   r.decode_tokens, r.cores, xml_escape(r.launcher), xml_escape(r.launcher_note),
                   r.rounds > 1 ? fmt::format(" Each configuration ran {} times, a pass over all "
                                              "after another; each row is the median of its rounds.",
                                              r.rounds)
                                : std::string(),
                   r.wall_seconds);
  b += links_html(r);
  b += "<h2>Findings</h2>\n<ul>\n";
  for (const auto& line : crossover_findings(r)) b += "<li>" + xml_escape(line) + "</li>\n";
  b += "</ul>\n<h2>Measurements</h2>\n" + html_table(r);
  b += fmt::format("<p class=\"note\"><b>naive</b>: every sequential optimization off: plain "
                   "scalar reference kernels, no flash attention, no memory plan, no fusion, the "
                   "graph rebuilt every step, and decoding without a KV cache (every step "
                   "recomputes the whole sequence; it decodes at most {} tokens; it runs only for "
                   "N &lt;= {}, --naive-max). ", kNaiveDecodeTokens, r.naive_max);
  b += 
       "<b>single</b>: the optimized single pipeline (SIMD kernels, KV cache, static memory). "
       "P x T: ranks x threads per rank. Memory is the peak per rank; sent bytes and wait time "
       "are the busiest rank's. Hidden is measured, the mean over ranks of 1 - wait / in flight: "
       "in flight is the time a rank's messages and collectives were under way (from post to "
       "the moment their completion was seen, concurrent ones counted once), wait the part of "
       "it the rank spent blocked; the rest compute hid. The planner column is <code>tandem plan --hardware " +
       xml_escape(r.planner_hardware) +
       "</code> for the same N and P (one core per rank; '-' where it has no layout for that "
       "scheme); error = predicted / measured - 1.</p>\n";
  b += "<h2>Plots</h2>\n";
  for (const auto& [caption, svg] : plots)
    b += "<div class=\"plot\">\n" + svg + "<p class=\"note\">" + xml_escape(caption) + "</p>\n</div>\n";
  b += "<h2>Traces</h2>\n";
  bool any = false;
  for (const auto& run : r.runs) any |= !run.trace_file.empty();
  if (any) {
    b += "<p>Chrome trace JSON per run, one process per rank with its compute and communication "
         "spans: open <a href=\"https://ui.perfetto.dev\">ui.perfetto.dev</a> (Open trace file) or "
         "chrome://tracing (Load) and pick the file.</p>\n<ul>\n";
    for (const auto& run : r.runs)
      if (!run.trace_file.empty())
        b += fmt::format("<li><a href=\"{0}\">{0}</a> — {1}, N={2}</li>\n",
                         xml_escape(run.trace_file), xml_escape(run.label()), run.tokens);
    b += "</ul>\n";
    for (const auto& [caption, svg] : timelines)
      b += "<div class=\"plot\">\n" + svg + "<p class=\"note\">" + xml_escape(caption) + "</p>\n</div>\n";
  } else {
    b += "<p>No traces: this tandem's prefill has no --trace.</p>\n";
  }
  b += fmt::format("<p class=\"note\">The time split above is for N={}. All numbers: "
                   "<a href=\"results.json\">results.json</a>.</p>\n", split_n);
  return html_page("tandem compare report", b);
}

}  // namespace

std::vector<std::string> write_report(const CompareResults& r, const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  fs::create_directories(d, ec);
  if (ec) fail(ErrorKind::BadInput, "--out {}: cannot create the folder ({})", dir, ec.message());
  int64_t split_n = 0;
  const std::vector<std::pair<std::string, std::string>> files = {
      {"latency.svg", latency_svg(r)},
      {"decode.svg", decode_svg(r)},
      {"memory.svg", memory_svg(r)},
      {"time_split.svg", split_svg(r, split_n)},
      {"memory_rss.svg", memory_rss_svg(r)}};
  std::vector<std::string> written;
  write_file(d / "results.json", to_json(r).dump(2) + "\n");
  written.push_back("results.json");
  for (const auto& [name, svg] : files) {
    write_file(d / name, svg);
    written.push_back(name);
  }
  const Figures plots = {
      {"Prefill latency vs N per strategy (log-log). Where a P-rank line drops below "
       "'single', sequence parallelism is faster. Dashed, in the same colour: the planner's "
       "prediction for that strategy (where it has one); naive is dotted.", files[0].second},
      {"Decode tokens/s vs prompt length N (log-log; higher is better). Dashed, in the same "
       "colour: the planner's predicted rate, 1 / its predicted seconds per token.",
       files[1].second},
      {"Peak KV cache + activation memory per rank vs N (log-log); the weights are on every "
       "rank in full (see the table). Schemes with equal memory draw on top of each other.",
       files[2].second},
      {"Measured: each rank's peak resident set (the operating system's count, not the "
       "accounting above) less the weights and what the process held before loading them "
       "(program, libraries, MPI runtime), vs N (log-log).", files[4].second},
      {"Per-rank prefill time split at the largest N: compute, time blocked on communication, "
       "and idle time until the slowest rank finishes.", files[3].second}};
  // Timelines of the traced runs at the largest N, drawn from their trace files.
  Figures timelines;
  for (const auto& run : r.runs) {
    if (!run.ok || run.tokens != split_n || run.trace_file.empty()) continue;
    std::ifstream f(d / run.trace_file);
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    timelines.emplace_back(
        fmt::format("Timeline of {} at N={} from {} (compute blue, communication red).",
                    run.label(), run.tokens, run.trace_file),
        timeline_svg(text, fmt::format("{} N={}: per-rank timeline", run.label(), run.tokens)));
  }
  write_file(d / "index.html", index_html(r, plots, timelines, split_n));
  written.push_back("index.html");
  return written;
}

}  // namespace tandem::analysis
