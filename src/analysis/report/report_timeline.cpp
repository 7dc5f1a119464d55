// Per-rank timeline SVG from a Chrome/Perfetto trace written by `tandem prefill --trace`.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "tandem/analysis/report.hpp"

namespace tandem::analysis {
namespace {

struct Span {
  int rank = 0;
  bool comm = false;
  double start = 0, dur = 0;  // microseconds
  std::string name;
};

std::vector<Span> spans_of(const nlohmann::json& j) {
  std::vector<Span> v;
  const auto& events = j.is_object() ? j.at("traceEvents") : j;
  for (const auto& e : events) {
    if (e.value("ph", "") != "X") continue;
    Span s;
    s.rank = e.value("pid", 0);
    s.comm = e.value("cat", "") == "comm" || e.value("tid", 0) == 1;
    s.start = e.value("ts", 0.0);
    s.dur = e.value("dur", 0.0);
    s.name = e.value("name", "");
    v.push_back(std::move(s));
  }
  return v;
}

}  // namespace

std::string timeline_svg(const std::string& trace_json, const std::string& title) {
  std::vector<Span> spans;
  try {
    spans = spans_of(nlohmann::json::parse(trace_json));
  } catch (const std::exception&) {
    spans.clear();
  }
  std::map<int, int> lane_of;  // rank -> row
  double t0 = 0, t1 = 0;
  bool first = true;
  for (const auto& s : spans) {
    lane_of.emplace(s.rank, 0);
    t0 = first ? s.start : std::min(t0, s.start);
    t1 = first ? s.start + s.dur : std::max(t1, s.start + s.dur);
    first = false;
  }
  int row = 0;
  for (auto& [rank, r] : lane_of) r = row++;
  const double left = 90, right = 30, top = 40, lane = 18, gap = 14;
  const double w = 720, h = top + double(lane_of.size()) * (2 * lane + gap) + 50;
  Svg svg(w, std::max(h, 120.0));
  svg.text(w / 2, 22, title, 14, "middle", 0, "bold");
  if (spans.empty() || t1 <= t0) {
    svg.text(w / 2, 70, "no trace events", 13, "middle");
    return svg.str();
  }
  const double span_us = t1 - t0;
  const auto x_of = [&](double t) { return left + (t - t0) / span_us * (w - left - right); };
  // Time axis in milliseconds with ~6 ticks.
  const double ms = span_us / 1000;
  const double mag = std::pow(10.0, std::floor(std::log10(ms / 6)));
  double step = mag;
  for (const double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= ms / 6) { step = m * mag; break; }
  const double axis_y = h - 40;
  svg.line(left, axis_y, w - right, axis_y, "#444");
  for (double t = 0; t <= ms + 1e-9; t += step) {
    const double x = x_of(t0 + t * 1000);
    svg.line(x, top - 4, x, axis_y, "#eeeeee");
    svg.text(x, axis_y + 15, axis_number(t), 11, "middle");
  }
  svg.text((left + w - right) / 2, axis_y + 32, "milliseconds since the first event", 11, "middle");
  for (const auto& [rank, r] : lane_of) {
    const double y = top + double(r) * (2 * lane + gap);
    svg.text(left - 8, y + lane - 4, fmt::format("rank {} compute", rank), 10, "end");
    svg.text(left - 8, y + 2 * lane - 4, "comm", 10, "end");
  }
  for (const auto& s : spans) {
    const double y = top + double(lane_of[s.rank]) * (2 * lane + gap) + (s.comm ? lane : 0);
    const double x = x_of(s.start);
    svg.rect(x, y + 1, std::max(0.6, x_of(s.start + s.dur) - x), lane - 2,
             s.comm ? "#e45756" : "#4c78a8",
             fmt::format("rank {} {}: {:.3f} ms", s.rank, s.name, s.dur / 1000));
  }
  return svg.str();
}

}  // namespace tandem::analysis
