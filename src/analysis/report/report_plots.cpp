// Plots drawn with the small SVG writer: lines on log/linear axes and stacked bars.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tandem/analysis/report.hpp"

namespace tandem::analysis {
namespace {

constexpr double kLeft = 78, kTop = 44, kBottom = 58, kLegend = 190;

// Maps data values to pixels along one axis.
struct Axis {
  double lo = 0, hi = 1;  // data range (in log10 units when log)
  bool log = false;
  double p0 = 0, p1 = 1;  // pixel positions of lo and hi

  double value(double v) const { return log ? std::log10(v) : v; }
  double pixel(double v) const { return p0 + (value(v) - lo) / (hi - lo) * (p1 - p0); }
};

// Nice linear tick step for a range: 1, 2 or 5 times a power of ten, ~5 ticks.
double nice_step(double span) {
  const double raw = span / 5;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0})
    if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

// Sets the range of `a` from data [mn, mx], padded so points do not touch the frame.
void fit_axis(Axis& a, double mn, double mx) {
  if (a.log) {
    mn = std::log10(mn), mx = std::log10(mx);
    if (mx - mn < 0.3) mn -= 0.15, mx += 0.15;
    const double pad = 0.05 * (mx - mn);
    a.lo = mn - pad, a.hi = mx + pad;
  } else {
    if (mx - mn <= 0) mx = mn + (mn == 0 ? 1 : std::abs(mn));
    const double pad = 0.05 * (mx - mn);
    a.lo = mn >= 0 && mn - pad < 0 ? 0 : mn - pad;
    a.hi = mx + pad;
  }
}

std::vector<double> ticks_of(const Axis& a) {
  std::vector<double> t;
  if (a.log) {
    for (const double mult : {1.0, 2.0, 5.0}) {
      for (int e = int(std::floor(a.lo)) - 1; e <= int(std::ceil(a.hi)) + 1; ++e) {
        const double v = mult * std::pow(10.0, e);
        const double lv = std::log10(v);
        if (lv >= a.lo && lv <= a.hi) t.push_back(v);
      }
      // Decades alone suffice when they give enough ticks.
      if (mult == 1.0 && t.size() >= 4) break;
    }
    std::sort(t.begin(), t.end());
    if (t.size() > 12) {
      std::vector<double> decades;
      for (double v : t)
        if (std::abs(std::log10(v) - std::round(std::log10(v))) < 1e-9) decades.push_back(v);
      t = decades;
    }
    return t;
  }
  const double step = nice_step(a.hi - a.lo);
  for (double v = std::ceil(a.lo / step) * step; v <= a.hi + 1e-12 * step; v += step)
    t.push_back(std::abs(v) < 1e-12 * step ? 0 : v);
  return t;
}

// Characters of 11 px text that fit beside a legend sample.
constexpr size_t kLegendChars = 22;

// Words of `text` in lines of at most `width` characters (a longer word gets its own line).
std::vector<std::string> wrap_words(const std::string& text, size_t width) {
  std::vector<std::string> lines;
  std::string line;
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = std::min(text.find(' ', at), text.size());
    const std::string word = text.substr(at, end - at);
    at = end + 1;
    if (word.empty()) continue;
    if (!line.empty() && line.size() + 1 + word.size() > width) lines.push_back(std::move(line)), line.clear();
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty() || lines.empty()) lines.push_back(line);
  return lines;
}

void frame(Svg& svg, const std::string& title, double w, double h, double right) {
  svg.text(w / 2 - kLegend / 2, 24, title, 15, "middle", 0, "bold");
  svg.line(kLeft, kTop, kLeft, h - kBottom, "#444");
  svg.line(kLeft, h - kBottom, right, h - kBottom, "#444");
}

}  // namespace

std::string line_plot_svg(const LinePlot& plot) {
  const double w = plot.width, h = plot.height, right = w - kLegend;
  Svg svg(w, h);
  frame(svg, plot.title, w, h, right);
  double xmn = std::numeric_limits<double>::infinity(), xmx = -xmn, ymn = xmn, ymx = -xmn;
  auto usable = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!plot.log_x || x > 0) && (!plot.log_y || y > 0);
  };
  for (const auto& s : plot.series)
    for (const auto& [x, y] : s.points)
      if (usable(x, y)) xmn = std::min(xmn, x), xmx = std::max(xmx, x), ymn = std::min(ymn, y), ymx = std::max(ymx, y);
  if (!std::isfinite(xmn)) {
    svg.text((kLeft + right) / 2, h / 2, "no data", 14, "middle");
    return svg.str();
  }
  Axis ax{0, 1, plot.log_x, kLeft + 10, right - 10};
  Axis ay{0, 1, plot.log_y, h - kBottom, kTop};
  fit_axis(ax, xmn, xmx);
  fit_axis(ay, ymn, ymx);
  ax.p0 = kLeft, ax.p1 = right;

  // Grid and tick labels.
  std::vector<double> xt = plot.x_ticks.empty() ? ticks_of(ax) : plot.x_ticks;
  for (const double v : xt) {
    if (plot.log_x && v <= 0) continue;
    const double x = ax.pixel(v);
    if (x < kLeft - 0.5 || x > right + 0.5) continue;
    svg.line(x, kTop, x, h - kBottom, "#e6e6e6");
    svg.line(x, h - kBottom, x, h - kBottom + 5, "#444");
    svg.text(x, h - kBottom + 18, axis_number(v), 11, "middle");
  }
  for (const double v : ticks_of(ay)) {
    const double y = ay.pixel(v);
    svg.line(kLeft, y, right, y, "#e6e6e6");
    svg.line(kLeft - 5, y, kLeft, y, "#444");
    svg.text(kLeft - 8, y + 4, axis_number(v), 11, "end");
  }
  svg.text((kLeft + right) / 2, h - 14, plot.x_label + (plot.log_x ? " (log scale)" : ""), 12,
           "middle");
  svg.text(18, (kTop + h - kBottom) / 2, plot.y_label + (plot.log_y ? " (log scale)" : ""), 12,
           "middle", -90);

  // Series, then the legend: one entry per series shown in it, then the notes.
  double ly = kTop + 8;
  for (size_t i = 0; i < plot.series.size(); ++i) {
    const auto& s = plot.series[i];
    const std::string& color = s.color.empty() ? palette(i) : s.color;
    std::vector<std::pair<double, double>> pts;
    for (const auto& [x, y] : s.points)
      if (usable(x, y)) pts.emplace_back(ax.pixel(x), ay.pixel(y));
    svg.polyline(pts, color, 2, s.dash);
    size_t k = 0;
    for (const auto& [x, y] : s.points) {
      if (!usable(x, y)) continue;
      svg.circle(pts[k].first, pts[k].second, s.marker, color,
                 fmt::format("{}: {} = {}, {} = {}", s.name, plot.x_label, axis_number(x),
                             plot.y_label, axis_number(y)));
      ++k;
    }
    if (!s.in_legend) continue;
    svg.line(right + 16, ly, right + 40, ly, color, 2.5, s.dash);
    svg.circle(right + 28, ly, s.marker, color);
    svg.text(right + 46, ly + 4, s.name, 12);
    ly += 20;
  }
  for (const auto& note : plot.notes) {
    svg.line(right + 16, ly, right + 40, ly, "#666", 2, note.dash);
    for (const auto& line : wrap_words(note.text, kLegendChars)) {
      svg.text(right + 46, ly + 4, line, 11);
      ly += 14;
    }
    ly += 6;
  }
  return svg.str();
}

std::string stacked_bar_svg(const BarPlot& plot) {
  const double w = plot.width, h = plot.height, right = w - kLegend;
  Svg svg(w, h);
  frame(svg, plot.title, w, h, right);
  auto color_of = [&](size_t i) {
    return i < plot.part_colors.size() ? plot.part_colors[i] : palette(i);
  };
  double ymx = 0;
  for (const auto& b : plot.bars) {
    double sum = 0;
    for (const double v : b.parts) sum += std::max(0.0, v);
    ymx = std::max(ymx, sum);
  }
  if (plot.bars.empty() || ymx <= 0) {
    svg.text((kLeft + right) / 2, h / 2, "no data", 14, "middle");
    return svg.str();
  }
  Axis ay{0, 1, false, h - kBottom, kTop};
  fit_axis(ay, 0, ymx);
  ay.lo = 0;
  for (const double v : ticks_of(ay)) {
    const double y = ay.pixel(v);
    svg.line(kLeft, y, right, y, "#e6e6e6");
    svg.line(kLeft - 5, y, kLeft, y, "#444");
    svg.text(kLeft - 8, y + 4, axis_number(v), 11, "end");
  }
  svg.text(18, (kTop + h - kBottom) / 2, plot.y_label, 12, "middle", -90);

  // Bars, with a gap between groups.
  size_t gaps = 0;
  for (size_t i = 1; i < plot.bars.size(); ++i) gaps += plot.bars[i].group != plot.bars[i - 1].group;
  const double slots = double(plot.bars.size()) + 0.8 * double(gaps) + 0.6;
  const double slot = (right - kLeft) / slots;
  const double bar_w = std::min(60.0, slot * 0.7);
  double x = kLeft + slot * 0.3;
  size_t group_start = 0;
  double group_x0 = x;
  for (size_t i = 0; i < plot.bars.size(); ++i) {
    const auto& b = plot.bars[i];
    if (i > 0 && b.group != plot.bars[i - 1].group) x += 0.8 * slot;
    if (i == 0 || b.group != plot.bars[i - 1].group) group_start = i, group_x0 = x;
    double base = 0;
    for (size_t k = 0; k < b.parts.size(); ++k) {
      const double v = std::max(0.0, b.parts[k]);
      const double y0 = ay.pixel(base), y1 = ay.pixel(base + v);
      const std::string name = k < plot.part_names.size() ? plot.part_names[k] : "";
      svg.rect(x + (slot - bar_w) / 2, y1, bar_w, y0 - y1, color_of(k),
               fmt::format("{} {}: {} = {}", b.group, b.label, name, axis_number(v)));
      base += v;
    }
    svg.text(x + slot / 2, h - kBottom + 16, b.label, 11, "middle");
    x += slot;
    const bool group_ends = i + 1 == plot.bars.size() || plot.bars[i + 1].group != b.group;
    if (group_ends && !b.group.empty()) {
      svg.text((group_x0 + x) / 2, h - kBottom + 32, b.group, 12, "middle", 0, "bold");
      if (i > group_start) svg.line(group_x0 + 4, h - kBottom + 21, x - 4, h - kBottom + 21, "#999");
    }
  }
  for (size_t k = 0; k < plot.part_names.size(); ++k) {
    const double ly = kTop + 8 + 20 * double(k);
    svg.rect(right + 16, ly - 7, 14, 14, color_of(k));
    svg.text(right + 36, ly + 4, plot.part_names[k], 12);
  }
  return svg.str();
}

}  // namespace tandem::analysis
