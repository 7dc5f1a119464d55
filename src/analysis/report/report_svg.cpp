// The SVG writer, the palette, number formatting for axes and the HTML page shell.
#include <fmt/format.h>

#include <array>
#include <cmath>

#include "tandem/analysis/report.hpp"

namespace tandem::analysis {

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        // Control characters other than tab/newline are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r')
          out += ' ';
        else
          out += c;
    }
  }
  return out;
}

namespace {
// Shortest fixed notation that round-trips a pixel coordinate well enough.
std::string px(double v) {
  if (!std::isfinite(v)) v = 0;
  return fmt::format("{:.1f}", v);
}
std::string title_of(const std::string& tooltip) {
  return tooltip.empty() ? "" : "<title>" + xml_escape(tooltip) + "</title>";
}
}  // namespace

Svg::Svg(double width, double height) : width_(width), height_(height) {}

void Svg::line(double x1, double y1, double x2, double y2, const std::string& stroke,
               double stroke_width, const std::string& dash) {
  body_ += fmt::format(R"(<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{}")",
                       px(x1), px(y1), px(x2), px(y2), xml_escape(stroke), px(stroke_width));
  if (!dash.empty()) body_ += fmt::format(R"( stroke-dasharray="{}")", xml_escape(dash));
  body_ += "/>\n";
}

void Svg::rect(double x, double y, double w, double h, const std::string& fill,
               const std::string& tooltip) {
  body_ += fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="{}">{}</rect>)",
                       px(x), px(y), px(std::max(0.0, w)), px(std::max(0.0, h)),
                       xml_escape(fill), title_of(tooltip));
  body_ += "\n";
}

void Svg::polyline(const std::vector<std::pair<double, double>>& points,
                   const std::string& stroke, double stroke_width, const std::string& dash) {
  if (points.empty()) return;
  std::string pts;
  for (const auto& [x, y] : points) {
    if (!pts.empty()) pts += ' ';
    pts += px(x);
    pts += ',';
    pts += px(y);
  }
  body_ += fmt::format(
      R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round")",
      pts, xml_escape(stroke), px(stroke_width));
  if (!dash.empty()) body_ += fmt::format(R"( stroke-dasharray="{}")", xml_escape(dash));
  body_ += "/>\n";
}

void Svg::circle(double x, double y, double r, const std::string& fill,
                 const std::string& tooltip) {
  body_ += fmt::format(R"(<circle cx="{}" cy="{}" r="{}" fill="{}">{}</circle>)", px(x), px(y),
                       px(r), xml_escape(fill), title_of(tooltip));
  body_ += "\n";
}

void Svg::text(double x, double y, const std::string& s, double size, const std::string& anchor,
               double rotate, const std::string& weight) {
  std::string transform;
  if (rotate != 0) transform = fmt::format(R"x( transform="rotate({} {} {})")x", px(rotate), px(x), px(y));
  body_ += fmt::format(
      R"(<text x="{}" y="{}" font-size="{}" text-anchor="{}" font-weight="{}"{}>{}</text>)",
      px(x), px(y), px(size), xml_escape(anchor), xml_escape(weight), transform, xml_escape(s));
  body_ += "\n";
}

std::string Svg::str() const {
  return fmt::format(
             R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}" )"
             R"(font-family="Helvetica, Arial, sans-serif" fill="#222">)",
             px(width_), px(height_)) +
         "\n" + fmt::format(R"(<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>)",
                            px(width_), px(height_)) +
         "\n" + body_ + "</svg>\n";
}

const std::string& palette(size_t i) {
  static const std::array<std::string, 10> colors = {
      "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
      "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
  return colors[i % colors.size()];
}

std::string axis_number(double v) {
  const double a = std::abs(v);
  if (a == 0) return "0";
  auto trim = [](std::string s) {
    if (s.find('.') != std::string::npos) {
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
    }
    return s;
  };
  if (a >= 1e9) return trim(fmt::format("{:.2f}", v / 1e9)) + "G";
  if (a >= 1e6) return trim(fmt::format("{:.2f}", v / 1e6)) + "M";
  if (a >= 1e4) return trim(fmt::format("{:.2f}", v / 1e3)) + "k";
  if (a >= 1) return trim(fmt::format("{:.2f}", v));
  if (a >= 1e-3) return trim(fmt::format("{:.4f}", v));
  return fmt::format("{:.0e}", v);
}

std::string html_page(const std::string& title, const std::string& body_html) {
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
         xml_escape(title) +
         "</title>\n<style>\n"
         "body { font-family: Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;"
         " color: #222; line-height: 1.4; padding: 0 1em; }\n"
         "h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em;"
         " border-bottom: 1px solid #ddd; }\n"
         "table { border-collapse: collapse; font-size: 0.85em; }\n"
         "th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }\n"
         "td { white-space: nowrap; } .wide { overflow-x: auto; }\n"
         "th { background: #f3f3f3; } td.l, th.l { text-align: left; }\n"
         "tr.naive td { color: #777; } tr.single td { background: #f6fbff; }\n"
         "pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }\n"
         ".plot { margin: 1em 0; } .note { color: #555; font-size: 0.9em; }\n"
         "</style>\n</head>\n<body>\n" +
         body_html + "\n</body>\n</html>\n";
}

}  // namespace tandem::analysis
