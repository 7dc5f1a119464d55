#pragma once
// Report building blocks with no external dependencies: a small SVG writer, two plot
// kinds (lines on log or linear axes; stacked bars) and a self-contained HTML page.
// Everything produced is plain text meant to be readable offline: no scripts, no fonts
// fetched from anywhere.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem::analysis {

// Escapes &, <, >, " and ' for XML/HTML text and attribute values.
std::string xml_escape(std::string_view text);

// Builds one <svg> element. Coordinates are in pixels, origin top left.
class Svg {
 public:
  Svg(double width, double height);
  void line(double x1, double y1, double x2, double y2, const std::string& stroke,
            double stroke_width = 1, const std::string& dash = "");
  void rect(double x, double y, double w, double h, const std::string& fill,
            const std::string& tooltip = "");
  // dash: a stroke-dasharray ("6 4"); empty: solid.
  void polyline(const std::vector<std::pair<double, double>>& points, const std::string& stroke,
                double stroke_width = 2, const std::string& dash = "");
  void circle(double x, double y, double r, const std::string& fill,
              const std::string& tooltip = "");
  // anchor: start, middle or end; rotate in degrees around (x, y).
  void text(double x, double y, const std::string& s, double size = 12,
            const std::string& anchor = "start", double rotate = 0,
            const std::string& weight = "normal");
  // The whole document (an <svg> root with xmlns, usable inline in HTML or as a file).
  std::string str() const;

 private:
  double width_, height_;
  std::string body_;
};

// The i-th colour of a fixed palette that stays distinguishable for ~10 series.
const std::string& palette(size_t i);

// Compact number for axis labels: 64, 1.5k, 2M, 0.25, 3e-05.
std::string axis_number(double v);

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y); non-positive y skipped on log axes
  std::string dash;         // stroke-dasharray of its line ("6 4" dashed, "2 3" dotted); empty: solid
  std::string color;        // empty: palette(its index in LinePlot::series)
  bool in_legend = true;    // false: drawn without a legend entry of its own (see notes)
  double marker = 3.5;      // radius of the point markers
};

// A legend line after the series' entries: a grey sample in `dash` and `text`
// ("dashed: predicted by the planner").
struct LegendNote {
  std::string dash, text;
};

struct LinePlot {
  std::string title, x_label, y_label;
  bool log_x = true, log_y = true;
  std::vector<double> x_ticks;  // explicit x ticks (e.g. the measured N); empty: automatic
  std::vector<Series> series;
  std::vector<LegendNote> notes;
  double width = 720, height = 420;
};
std::string line_plot_svg(const LinePlot& plot);

struct StackedBar {
  std::string label;          // under the bar
  std::string group;          // bars of one group are drawn together, group name below
  std::vector<double> parts;  // one value per part name, stacked bottom to top
};
struct BarPlot {
  std::string title, y_label;
  std::vector<std::string> part_names;
  std::vector<std::string> part_colors;  // empty: the palette
  std::vector<StackedBar> bars;
  double width = 720, height = 420;
};
std::string stacked_bar_svg(const BarPlot& plot);

// A per-rank timeline of a Chrome trace ({"traceEvents": [...]} with "X" events; pid =
// rank, cat "compute" or "comm"): one lane for compute and one for communication per rank.
// A malformed trace gives an SVG that says so.
std::string timeline_svg(const std::string& trace_json, const std::string& title);

// A complete HTML5 page with an inline stylesheet; `body_html` is inserted as is.
std::string html_page(const std::string& title, const std::string& body_html);

}  // namespace tandem::analysis
