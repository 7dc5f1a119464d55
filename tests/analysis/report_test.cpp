// The report writer: SVG is well-formed XML (checked by a small strict parser), the HTML
// page embeds every plot inline and needs no network, results.json parses.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <sstream>

#include "support/test_paths.hpp"
#include "tandem/analysis/compare.hpp"
#include "tandem/analysis/report.hpp"
#include "tandem/core/error.hpp"

namespace ta = tandem::analysis;

using tandem::test::read_text;

namespace {

// Strict well-formedness check of an XML document without prolog: one root element,
// tags nest and match, attributes are name="value" without duplicates, '&' only starts a
// known entity, no raw '<' in text or values. Returns "" when well formed, else why not.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> stack;
  int roots = 0;
  size_t i = 0;
  auto entity_ok = [&](size_t at) {
    const size_t semi = s.find(';', at);
    if (semi == std::string::npos || semi - at > 8) return false;
    const std::string e = s.substr(at + 1, semi - at - 1);
    static const std::set<std::string> named = {"amp", "lt", "gt", "quot", "apos"};
    if (named.count(e)) return true;
    if (e.size() >= 2 && e[0] == '#') {
      for (size_t k = 1; k < e.size(); ++k)
        if (!std::isdigit(static_cast<unsigned char>(e[k]))) return false;
      return true;
    }
    return false;
  };
  auto name_at = [&](size_t& k) {
    const size_t b = k;
    if (k >= s.size() || !std::isalpha(static_cast<unsigned char>(s[k]))) return std::string();
    while (k < s.size() && (std::isalnum(static_cast<unsigned char>(s[k])) || s[k] == '-' ||
                            s[k] == ':' || s[k] == '_'))
      ++k;
    return s.substr(b, k - b);
  };
  while (i < s.size()) {
    if (s[i] == '&') {
      if (!entity_ok(i)) return "bad entity at " + std::to_string(i);
      ++i;
      continue;
    }
    if (s[i] != '<') {
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(s[i])))
        return "text outside the root at " + std::to_string(i);
      ++i;
      continue;
    }
    ++i;
    if (i < s.size() && s[i] == '/') {
      ++i;
      const std::string name = name_at(i);
      if (i >= s.size() || s[i] != '>') return "bad closing tag at " + std::to_string(i);
      if (stack.empty() || stack.back() != name) return "mismatched </" + name + ">";
      stack.pop_back();
      ++i;
      continue;
    }
    const std::string name = name_at(i);
    if (name.empty()) return "bad tag name at " + std::to_string(i);
    if (stack.empty() && ++roots > 1) return "more than one root";
    std::set<std::string> attrs;
    bool self_closing = false;
    while (true) {
      if (i >= s.size()) return "unterminated tag <" + name;
      if (std::isspace(static_cast<unsigned char>(s[i]))) { ++i; continue; }
      if (s[i] == '>') { ++i; break; }
      if (s[i] == '/' && i + 1 < s.size() && s[i + 1] == '>') { self_closing = true; i += 2; break; }
      const std::string attr = name_at(i);
      if (attr.empty() || !attrs.insert(attr).second) return "bad or repeated attribute in <" + name;
      if (i + 1 >= s.size() || s[i] != '=' || s[i + 1] != '"') return "attribute " + attr + " not =\"...\"";
      i += 2;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '<') return "raw < in attribute " + attr;
        if (s[i] == '&' && !entity_ok(i)) return "bad entity in attribute " + attr;
        ++i;
      }
      if (i >= s.size()) return "unterminated attribute " + attr;
      ++i;
    }
    if (!self_closing) stack.push_back(name);
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return "no root element";
  return "";
}

// The <polyline> elements of an SVG: stroke, stroke-dasharray ("" when solid), points.
struct Polyline {
  std::string stroke, dash;
  std::vector<std::pair<double, double>> points;
};
std::vector<Polyline> polylines(const std::string& svg) {
  std::vector<Polyline> out;
  size_t at = 0;
  while ((at = svg.find("<polyline ", at)) != std::string::npos) {
    const size_t end = svg.find("/>", at);
    const std::string tag = svg.substr(at, end - at);
    auto attr = [&](const std::string& name) {
      const std::string key = " " + name + "=\"";
      const size_t b = tag.find(key);
      if (b == std::string::npos) return std::string();
      const size_t v = b + key.size();
      return tag.substr(v, tag.find('"', v) - v);
    };
    Polyline p;
    p.stroke = attr("stroke");
    p.dash = attr("stroke-dasharray");
    std::istringstream pts(attr("points"));
    std::string xy;
    while (pts >> xy) {
      const size_t comma = xy.find(',');
      p.points.emplace_back(std::stod(xy.substr(0, comma)), std::stod(xy.substr(comma + 1)));
    }
    out.push_back(std::move(p));
    at = end;
  }
  return out;
}

ta::CompareResults sample_results() {
  ta::CompareResults r;
  r.model = "tiny <synthetic> & \"quoted\"";
  r.synthetic_model = true;
  r.launcher = "in-process threads";
  r.cores = 2;
  r.decode_tokens = 4;
  r.lengths = {256, 1024};
  for (const int64_t n : r.lengths) {
    for (const char* s : {"naive", "single", "ring"}) {
      ta::RunMeasurement m;
      m.strategy = s;
      m.ranks = m.strategy == "ring" ? 2 : 1;
      m.tokens = n;
      m.ok = true;
      m.prefill_seconds = (m.strategy == "naive" ? 10.0 : m.strategy == "ring" ? 0.6 : 1.0) * double(n) / 1024;
      m.prefill_tokens_per_s = double(n) / m.prefill_seconds;
      m.decode_tokens_per_s = m.strategy == "naive" ? 2.0 : 300.0;
      for (int k = 0; k < m.ranks; ++k) {
        ta::RankMeasurement rk;
        rk.rank = k;
        rk.tokens = n / m.ranks;
        rk.seconds = m.prefill_seconds * (k ? 0.9 : 1.0);
        rk.kv_bytes = 1e6 * double(n) / m.ranks;
        rk.activation_bytes = 2e5;
        rk.weights_bytes = 4.8e7;
        rk.comm_wait_seconds = m.ranks > 1 ? 0.1 * rk.seconds : 0;
        rk.bytes_sent = m.ranks > 1 ? 1e6 : 0;
        m.per_rank.push_back(rk);
      }
      if (m.strategy != "naive") m.predicted = ta::Prediction{"x", m.prefill_seconds * 1.2, 0.01, 1e8, 1e6};
      r.runs.push_back(m);
    }
  }
  ta::RunMeasurement bad;
  bad.strategy = "ulysses";
  bad.ranks = 2;
  bad.tokens = 1024;
  bad.error = "--sp: <heads> not divisible";
  r.runs.push_back(bad);
  return r;
}

}  // namespace

TEST(Report, CheckerRejectsMalformedXml) {
  EXPECT_EQ(xml_problem("<a><b x=\"1\"/>t &amp; u</a>"), "");
  EXPECT_NE(xml_problem("<a><b></a></b>"), "");
  EXPECT_NE(xml_problem("<a x=1></a>"), "");
  EXPECT_NE(xml_problem("<a>x & y</a>"), "");
  EXPECT_NE(xml_problem("<a></a><b></b>"), "");
  EXPECT_NE(xml_problem("<a x=\"1\" x=\"2\"></a>"), "");
  EXPECT_NE(xml_problem("<a>"), "");
}

TEST(Report, SvgWriterEscapesAndIsWellFormed) {
  ta::Svg svg(200, 100);
  svg.text(10, 20, "a < b & \"c\" 'd'", 12, "start", -90);
  svg.rect(0, 0, 10, 10, "#fff", "tip <&>");
  svg.polyline({{0, 0}, {5, 5}}, "red");
  svg.line(0, 0, 1, 1, "#000", 1, "4 2");
  svg.circle(3, 3, 1, "blue", "c");
  const auto doc = svg.str();
  EXPECT_EQ(xml_problem(doc), "") << doc;
  EXPECT_NE(doc.find("a &lt; b &amp; &quot;c&quot;"), std::string::npos);
  EXPECT_NE(doc.find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
}

TEST(Report, PlotsAreWellFormed) {
  ta::LinePlot lp;
  lp.title = "latency <N>";
  lp.x_label = "N";
  lp.y_label = "s";
  lp.series = {{"single", {{256, 0.1}, {1024, 0.5}, {4096, 4}}},
               {"ring P=2", {{256, 0.2}, {1024, 0.6}, {4096, 3}}, "6 4"},
               {"empty", {}}};
  lp.notes = {{"6 4", "dashed: <a note> wrapped over lines"}};
  const auto line = ta::line_plot_svg(lp);
  EXPECT_EQ(xml_problem(line), "") << line;
  EXPECT_NE(line.find("ring P=2"), std::string::npos);
  EXPECT_NE(line.find("(log scale)"), std::string::npos);
  lp.series = {};
  EXPECT_EQ(xml_problem(ta::line_plot_svg(lp)), "");  // "no data"

  ta::BarPlot bp;
  bp.title = "split";
  bp.y_label = "seconds";
  bp.part_names = {"compute", "comm", "idle"};
  bp.bars = {{"r0", "ring P=2", {1, 0.2, 0}}, {"r1", "ring P=2", {0.8, 0.1, 0.3}},
             {"all", "single", {1.5, 0, 0}}};
  const auto bars = ta::stacked_bar_svg(bp);
  EXPECT_EQ(xml_problem(bars), "") << bars;
  EXPECT_NE(bars.find("comm"), std::string::npos);
  EXPECT_NE(bars.find("idle"), std::string::npos);
}

TEST(Report, AxisNumbers) {
  EXPECT_EQ(ta::axis_number(64), "64");
  EXPECT_EQ(ta::axis_number(16384), "16.38k");
  EXPECT_EQ(ta::axis_number(0.25), "0.25");
  EXPECT_EQ(ta::axis_number(2e6), "2M");
}

TEST(Report, FolderHasJsonSvgAndSelfContainedHtml) {
  const auto r = sample_results();
  const std::string dir = tandem::test::temp_dir() + "/report";
  const auto files = ta::write_report(r, dir);
  for (const char* f : {"results.json", "latency.svg", "decode.svg", "memory.svg", "memory_rss.svg",
                        "time_split.svg", "index.html"}) {
    EXPECT_NE(std::find(files.begin(), files.end(), f), files.end()) << f;
    ASSERT_TRUE(std::filesystem::exists(dir + "/" + f)) << f;
  }
  for (const char* f : {"latency.svg", "decode.svg", "memory.svg", "memory_rss.svg", "time_split.svg"}) {
    const auto svg = read_text(dir + "/" + f);
    EXPECT_EQ(xml_problem(svg), "") << f;
  }
  const auto j = nlohmann::json::parse(read_text(dir + "/results.json"));
  ASSERT_EQ(j["runs"].size(), r.runs.size());
  EXPECT_EQ(j["runs"][2]["label"], "ring P=2");
  EXPECT_NEAR(j["runs"][1]["predicted"]["prefill_error"].get<double>(), 0.2, 1e-9);
  EXPECT_FALSE(j["runs"].back()["ok"].get<bool>());
  EXPECT_TRUE(j["crossover"].is_array());

  const auto html = read_text(dir + "/index.html");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  // Every plot is inline, and each inline <svg> is well formed on its own.
  size_t count = 0, at = 0;
  while ((at = html.find("<svg", at)) != std::string::npos) {
    const size_t end = html.find("</svg>", at);
    ASSERT_NE(end, std::string::npos);
    EXPECT_EQ(xml_problem(html.substr(at, end + 6 - at)), "");
    at = end;
    ++count;
  }
  EXPECT_EQ(count, 5u);
  // Offline: no scripts, no external stylesheets or fonts; the model name is escaped.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
  EXPECT_NE(html.find("tiny &lt;synthetic&gt; &amp; &quot;quoted&quot;"), std::string::npos);
  EXPECT_NE(html.find("failed: --sp: &lt;heads&gt; not divisible"), std::string::npos);
  EXPECT_NE(html.find("ring P=2 beats the single optimized pipeline"), std::string::npos) << html;
}

// The planner's predictions are dashed lines in the colour of the measured line: exactly
// on it where the prediction equals the measurement, a constant distance above it (log
// axis) where it is twice the measurement; none for a run without a prediction.
TEST(Report, PredictionsAreDashedLinesOfTheMeasuredColour) {
  ta::CompareResults r;
  r.model = "m";
  r.lengths = {256, 1024, 4096};
  for (const int64_t n : r.lengths) {
    for (const char* s : {"naive", "single", "ring", "pass-q"}) {
      ta::RunMeasurement m;
      m.strategy = s;
      m.ranks = m.strategy == "ring" || m.strategy == "pass-q" ? 2 : 1;
      m.tokens = n;
      m.ok = true;
      m.prefill_seconds = (m.strategy == "naive" ? 8.0 : m.strategy == "single" ? 1.0 : 0.7) *
                          double(n) / 1024;
      m.decode_tokens_per_s = (m.strategy == "naive" ? 2.0 : 300.0) * 1024 / double(n);
      if (m.strategy == "single")  // predicted exactly
        m.predicted = ta::Prediction{"local", m.prefill_seconds, 1 / *m.decode_tokens_per_s, 0, 0};
      if (m.strategy == "ring")  // predicted twice as slow
        m.predicted =
            ta::Prediction{"ring", 2 * m.prefill_seconds, 2 / *m.decode_tokens_per_s, 0, 0};
      r.runs.push_back(m);
    }
  }
  // Series colours follow the labels in the order first run: naive, single, ring, pass-q.
  const std::string naive = ta::palette(0), single = ta::palette(1), ring = ta::palette(2),
                    passq = ta::palette(3);
  const std::string dir = tandem::test::temp_dir() + "/report-predicted";
  ta::write_report(r, dir);
  for (const char* f : {"latency.svg", "decode.svg"}) {
    SCOPED_TRACE(f);
    const auto svg = read_text(dir + "/" + f);
    EXPECT_EQ(xml_problem(svg), "");
    std::map<std::string, Polyline> solid, dashed;
    for (const auto& p : polylines(svg)) {
      if (p.dash.empty()) solid[p.stroke] = p;
      if (p.dash == "6 4") EXPECT_TRUE(dashed.emplace(p.stroke, p).second) << p.stroke;
      if (p.stroke == naive) EXPECT_EQ(p.dash, "2 3");  // naive: dotted, not dashed
    }
    ASSERT_EQ(dashed.size(), 2u);
    ASSERT_TRUE(dashed.count(single) && dashed.count(ring));
    EXPECT_FALSE(dashed.count(passq));
    ASSERT_TRUE(solid.count(single) && solid.count(ring) && solid.count(passq));
    // Predicted == measured: the same pixels.
    EXPECT_EQ(dashed[single].points, solid[single].points);
    // Twice the seconds (half the rate): the same N, a constant step up (down) the log axis.
    const auto& pred = dashed[ring].points;
    const auto& meas = solid[ring].points;
    ASSERT_EQ(pred.size(), 3u);
    ASSERT_EQ(meas.size(), 3u);
    const double step = pred[0].second - meas[0].second;
    EXPECT_GT(std::abs(step), 5);
    EXPECT_EQ(step < 0, std::string(f) == "latency.svg");  // slower: higher on the latency plot
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_EQ(pred[k].first, meas[k].first);
      EXPECT_NEAR(pred[k].second - meas[k].second, step, 0.15);
    }
    EXPECT_NE(svg.find(">dashed: predicted by<"), std::string::npos);
    EXPECT_NE(svg.find(">the planner<"), std::string::npos);
  }
  // No predictions: no dashed line and no note.
  for (auto& m : r.runs) m.predicted.reset();
  ta::write_report(r, dir);
  const auto svg = read_text(dir + "/latency.svg");
  for (const auto& p : polylines(svg)) EXPECT_NE(p.dash, "6 4");
  EXPECT_EQ(svg.find("predicted by"), std::string::npos);
}

TEST(Report, CrossoverFindings) {
  auto r = sample_results();
  // ring is slower at 256, faster at 1024: the crossover is at 1024.
  for (auto& m : r.runs)
    if (m.strategy == "ring" && m.tokens == 256) m.prefill_seconds = 1.0;
  std::string all;
  for (const auto& l : ta::crossover_findings(r)) all += l + "\n";
  EXPECT_NE(all.find("ring P=2 beats the single optimized pipeline from N=1024"), std::string::npos)
      << all;
  EXPECT_NE(all.find("10.0x faster than the naive"), std::string::npos) << all;
  // No peak RSS measured: memory is said to be accounting only, and 1/P is not claimed.
  EXPECT_NE(all.find("Memory per rank was not measured"), std::string::npos) << all;
  EXPECT_EQ(all.find("surely"), std::string::npos) << all;
}

// With peak RSS measured, the findings state each P-rank run's measured memory against the
// single pipeline's at the largest N both ran, as a ratio beside 1/P.
TEST(Report, MemoryFindingsAreMeasured) {
  auto r = sample_results();
  for (auto& m : r.runs)
    for (auto& rk : m.per_rank) {
      rk.baseline_rss_bytes = 20 * double(1 << 20);
      const double beyond = (m.strategy == "ring" ? 60 : 100) * double(1 << 20) * double(m.tokens) / 1024;
      rk.peak_rss_bytes = rk.baseline_rss_bytes + rk.weights_bytes + beyond;
    }
  std::string all;
  for (const auto& l : ta::crossover_findings(r)) all += l + "\n";
  EXPECT_NE(all.find("Memory, measured: at N=1024 ring P=2 holds 60.0 MiB per rank beyond the "
                     "weights and the runtime baseline (peak RSS), 0.60x the single pipeline's "
                     "100.0 MiB (1/P = 0.50)."),
            std::string::npos)
      << all;
  // More than the single pipeline: said plainly.
  for (auto& m : r.runs)
    if (m.strategy == "ring")
      for (auto& rk : m.per_rank) rk.peak_rss_bytes += 80 * double(1 << 20);
  all.clear();
  for (const auto& l : ta::crossover_findings(r)) all += l + "\n";
  EXPECT_NE(all.find("1.40x the single pipeline's 100.0 MiB: no saving"), std::string::npos) << all;
}

// compare reads its subprocesses through the runtime's typed results (one schema), and
// predicts each run with the planner in this process.
TEST(Report, ReadsTypedResultsAndPredictsInProcess) {
  tandem::PrefillReport p;
  p.model = "m.gguf";
  p.scheme = "ring";
  p.ranks = 2;
  p.tokens = 1000;
  p.seconds = 0.5;
  p.tokens_per_s = 2000;
  for (int r = 0; r < 2; ++r) {
    tandem::RankReport x;
    x.rank = r;
    x.tokens = 500;
    x.seconds = 0.5 - 0.1 * r;
    x.bytes_sent = 1e6 + r;
    x.comm_wait_seconds = 0.01;
    x.comm_transfer_seconds = 0.04;  // in flight; 0.01 of it blocked: 75% hidden
    x.head_pairs = 125250.0 * (r + 1);
    x.weights_bytes = 40e6;
    x.kv_bytes = 10e6;
    x.peak_rss_bytes = 90e6 + 1e6 * r;
    x.baseline_rss_bytes = 20e6;
    p.per_rank.push_back(x);
  }
  const auto back = tandem::prefill_report_from_json(tandem::to_json(p), "prefill --json");
  ta::RunMeasurement run;
  ta::set_prefill(run, back);
  EXPECT_TRUE(run.ok);
  EXPECT_EQ(run.tokens, 1000);
  ASSERT_EQ(run.per_rank.size(), 2u);
  EXPECT_EQ(run.per_rank[1].bytes_sent, 1e6 + 1);
  EXPECT_EQ(run.per_rank[1].head_pairs, 250500.0);
  EXPECT_NEAR(run.hidden_fraction(), 0.75, 1e-12);
  // Measured memory travels too: peak RSS, and beyond the weights and the baseline.
  EXPECT_EQ(run.peak_rss_bytes(), 91e6);
  EXPECT_EQ(run.peak_rss_beyond_weights_bytes(), 31e6);
  EXPECT_EQ(run.per_rank[0].unaccounted_bytes(), 90e6 - 20e6 - 40e6 - 10e6);
  // Results written before the time in flight was measured (comm_alone_seconds, a
  // ping-pong estimate, instead) still parse; their hidden fraction is unknown: 0.
  {
    auto old = tandem::to_json(p);
    EXPECT_EQ(old["per_rank"][0]["comm_transfer_seconds"].get<double>(), 0.04);
    EXPECT_NEAR(old["per_rank"][0]["comm_hidden_fraction"].get<double>(), 0.75, 1e-12);
    for (auto& x : old["per_rank"]) x.erase("comm_transfer_seconds"), x["comm_alone_seconds"] = 0.04;
    const auto read = tandem::prefill_report_from_json(old, "old prefill --json");
    EXPECT_EQ(read.per_rank[0].comm_transfer_seconds, 0);
    EXPECT_EQ(read.per_rank[0].comm_wait_seconds, 0.01);
    EXPECT_EQ(read.per_rank[0].hidden_fraction(), 0);
  }
  // A field missing: an error naming the document and the field.
  auto j = tandem::to_json(p);
  j["per_rank"][0].erase("kv_bytes");
  try {
    tandem::prefill_report_from_json(j, "prefill --json");
    ADD_FAILURE() << "accepted a report without kv_bytes";
  } catch (const tandem::Error& e) {
    EXPECT_NE(std::string(e.what()).find("kv_bytes"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("prefill --json"), std::string::npos) << e.what();
  }
  tandem::GenerateReport g;
  g.seed = 7;
  g.stats.n_decode_steps = 4;
  g.stats.decode_seconds = 0.02;
  g.tokens = {5, 6, 7};
  const auto g2 = tandem::generate_report_from_json(tandem::to_json(g), "generate --json");
  EXPECT_EQ(g2.tokens, g.tokens);
  EXPECT_NEAR(g2.stats.gen_tokens_per_s(), 200.0, 1e-9);

  // Predictions: hybrid:2x2 is planned as exactly that layout; naive has none.
  const auto req = ta::plan_request("llama3-8b", *ta::builtin_profile("h100"), 1, 1, 0, 0);
  ta::RunMeasurement h;
  h.strategy = "hybrid:2x2";
  h.ranks = 4;
  h.tokens = 65536;
  const auto ph = ta::predict_run(req, h);
  ASSERT_TRUE(ph.has_value());
  EXPECT_EQ(ph->layout, "ulysses 2 x ring 2");
  EXPECT_GT(ph->prefill_seconds, 0);
  ta::RunMeasurement naive = h;
  naive.strategy = "naive";
  EXPECT_FALSE(ta::predict_run(req, naive));
  ta::RunMeasurement bogus = h;
  bogus.strategy = "ring2";
  std::string why;
  EXPECT_FALSE(ta::predict_run(req, bogus, &why));
  EXPECT_NE(why.find("ring2"), std::string::npos) << why;
}

TEST(Report, TimelineFromTrace) {
  const std::string trace = R"({"traceEvents": [
    {"name": "process_name", "ph": "M", "pid": 0, "args": {"name": "rank 0"}},
    {"name": "qkv", "cat": "compute", "ph": "X", "pid": 0, "tid": 0, "ts": -5, "dur": 100},
    {"name": "wait", "cat": "comm", "ph": "X", "pid": 0, "tid": 1, "ts": 100, "dur": 50},
    {"name": "attention", "cat": "compute", "ph": "X", "pid": 1, "tid": 0, "ts": 0, "dur": 160}]})";
  const auto svg = ta::timeline_svg(trace, "ring <P=2>");
  EXPECT_EQ(xml_problem(svg), "") << svg;
  EXPECT_NE(svg.find("rank 1 compute"), std::string::npos);
  EXPECT_NE(svg.find("rank 0 wait"), std::string::npos);
  const auto bad = ta::timeline_svg("{not json", "broken");
  EXPECT_EQ(xml_problem(bad), "");
  EXPECT_NE(bad.find("no trace events"), std::string::npos);
}

namespace {
ta::RunMeasurement round_of(double prefill_s, std::optional<double> decode, double predicted_prefill,
                            double predicted_step, double core) {
  ta::RunMeasurement m;
  m.strategy = "ring";
  m.ranks = 2;
  m.tokens = 1024;
  m.ok = true;
  m.prefill_seconds = prefill_s;
  m.decode_tokens_per_s = decode;
  m.predicted = ta::Prediction{"ring 2", predicted_prefill, predicted_step, 0, 0};
  m.core_rates = {ta::CoreRates{core, core, core}};
  m.trace_file = "traces/r" + std::to_string(prefill_s) + ".json";
  return m;
}
}  // namespace

// compare --rounds: the row is the median round of the prefill (with its cores and trace)
// and, for the decode, the median round of the decode rate, not one round for both; its
// predictions are the medians of the rounds' predictions, not the median round's own (a
// round whose probe caught a spell its run did not see predicts that round alone wrong).
TEST(Report, MedianOfRounds) {
  const auto row = ta::median_of_rounds({round_of(0.3, 20, 0.31, 0.2, 1), round_of(0.1, 10, 0.11, 0.09, 2),
                                         round_of(0.2, 30, 0.9, 0.03, 3)});
  EXPECT_EQ(row.prefill_round, 2);
  EXPECT_DOUBLE_EQ(row.prefill_seconds, 0.2);
  ASSERT_TRUE(row.predicted);
  EXPECT_DOUBLE_EQ(row.predicted->prefill_seconds, 0.31);
  EXPECT_DOUBLE_EQ(row.core_rates.at(0).product, 3);
  EXPECT_EQ(row.trace_file, "traces/r" + std::to_string(0.2) + ".json");
  EXPECT_EQ(row.decode_round, 0);
  EXPECT_DOUBLE_EQ(*row.decode_tokens_per_s, 20);
  EXPECT_DOUBLE_EQ(row.predicted->decode_seconds_per_token, 0.09);
  ASSERT_EQ(row.rounds.size(), 3u);
  EXPECT_DOUBLE_EQ(row.rounds[1].prefill_seconds, 0.1);
  EXPECT_DOUBLE_EQ(*row.rounds[2].decode_tokens_per_s, 30);
  EXPECT_DOUBLE_EQ(row.rounds[1].predicted->decode_seconds_per_token, 0.09);
  const auto j = ta::to_json(ta::CompareResults{.runs = {row}});
  EXPECT_EQ(j["runs"][0]["rounds"].size(), 3u);
  EXPECT_EQ(j["runs"][0]["decode_round"], 0);
  EXPECT_DOUBLE_EQ(j["runs"][0]["predicted"]["decode_error"].get<double>(), 1 / 0.09 / 20 - 1);

  // Of two, the faster; a failed round counts only where all failed; a round without a
  // decode leaves the decode to those that have one.
  auto failed = round_of(0.01, 50, 0.01, 0.01, 9);
  failed.ok = false;
  const auto two = ta::median_of_rounds({round_of(0.2, std::nullopt, 0.2, 0.1, 1), failed,
                                         round_of(0.1, 40, 0.1, 0.1, 2)});
  EXPECT_EQ(two.prefill_round, 2);
  EXPECT_EQ(two.decode_round, 2);
  EXPECT_DOUBLE_EQ(*two.decode_tokens_per_s, 40);
  const auto none = ta::median_of_rounds({failed, failed});
  EXPECT_FALSE(none.ok);
  EXPECT_EQ(none.rounds.size(), 2u);
  // One round is the run itself.
  EXPECT_TRUE(ta::median_of_rounds({round_of(0.2, 20, 0.2, 0.05, 1)}).rounds.empty());
}
