// Curves of a hardware profile: grid lookup with log-log interpolation, and JSON.
#include "tandem/analysis/curve.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "tandem/core/error.hpp"

namespace tandem::analysis {

Curve Curve::grid(std::vector<std::string> axes, std::vector<std::vector<double>> points,
                  double fill) {
  Curve c;
  c.axes = std::move(axes);
  c.points = std::move(points);
  size_t n = 1;
  for (const auto& p : c.points) n *= p.size();
  c.values.assign(n, fill);
  return c;
}

size_t Curve::index(std::initializer_list<size_t> at) const {
  TD_CHECK(at.size() == points.size());
  size_t flat = 0, a = 0;
  for (const size_t i : at) {
    TD_CHECK(i < points[a].size());
    flat = flat * points[a].size() + i;
    ++a;
  }
  return flat;
}

double Curve::at(std::initializer_list<std::pair<std::string_view, double>> coords) const {
  TD_CHECK(!values.empty());
  const size_t A = axes.size();
  // Per axis: the two neighbouring points and the weight of the upper one.
  std::vector<size_t> lo(A), hi(A);
  std::vector<double> w(A, 0.0);
  for (size_t a = 0; a < A; ++a) {
    const double* x = nullptr;
    for (const auto& [name, v] : coords)
      if (name == axes[a]) x = &v;
    if (!x) fail(ErrorKind::Internal, "curve lookup without coordinate '{}'", axes[a]);
    const auto& p = points[a];
    const double v = std::clamp(*x, p.front(), p.back());
    size_t j = size_t(std::upper_bound(p.begin(), p.end(), v) - p.begin());
    j = std::clamp<size_t>(j, 1, p.size()) - 1;  // p[j] <= v
    lo[a] = j;
    hi[a] = std::min(j + 1, p.size() - 1);
    if (hi[a] != lo[a]) w[a] = std::log(v / p[lo[a]]) / std::log(p[hi[a]] / p[lo[a]]);
  }
  // Multilinear in the logs over the 2^A corners.
  double log_sum = 0;
  for (size_t corner = 0; corner < (size_t(1) << A); ++corner) {
    double weight = 1;
    size_t flat = 0;
    for (size_t a = 0; a < A; ++a) {
      const bool up = (corner >> a) & 1;
      weight *= up ? w[a] : 1 - w[a];
      flat = flat * points[a].size() + (up ? hi[a] : lo[a]);
    }
    if (weight != 0) log_sum += weight * std::log(values[flat]);
  }
  return std::exp(log_sum);
}

void Curve::validate(const std::string& where) const {
  if (axes.empty() || axes.size() != points.size())
    bad_input("{}: a curve needs 'axes' with points for each", where);
  size_t n = 1;
  for (size_t a = 0; a < axes.size(); ++a) {
    const auto& p = points[a];
    if (p.empty()) bad_input("{}: axis '{}' has no points", where, axes[a]);
    for (size_t i = 0; i < p.size(); ++i) {
      if (!(p[i] > 0) || !std::isfinite(p[i]))
        bad_input("{}: axis '{}' point {} must be a positive number", where, axes[a], i);
      if (i && !(p[i] > p[i - 1])) bad_input("{}: axis '{}' points must increase", where, axes[a]);
    }
    n *= p.size();
  }
  if (values.size() != n)
    bad_input("{}: 'values' has {} numbers, the grid {}", where, values.size(), n);
  for (size_t i = 0; i < values.size(); ++i)
    if (!(values[i] > 0) || !std::isfinite(values[i]))
      bad_input("{}: value {} must be a positive number", where, i);
}

nlohmann::json curve_to_json(const Curve& c) {
  nlohmann::json axes = nlohmann::json::array();
  for (size_t a = 0; a < c.axes.size(); ++a) axes.push_back({{"name", c.axes[a]}, {"points", c.points[a]}});
  return {{"axes", axes}, {"values", c.values}};
}

Curve curve_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("axes") || !j.at("axes").is_array() || !j.contains("values") ||
      !j.at("values").is_array())
    bad_input("{}: a curve must be an object with 'axes' (array) and 'values' (array)", where);
  Curve c;
  for (const auto& ax : j.at("axes")) {
    if (!ax.is_object() || !ax.contains("name") || !ax.at("name").is_string() ||
        !ax.contains("points") || !ax.at("points").is_array())
      bad_input("{}: each axis needs 'name' (string) and 'points' (array)", where);
    c.axes.push_back(ax.at("name").get<std::string>());
    std::vector<double> p;
    for (const auto& v : ax.at("points")) {
      if (!v.is_number()) bad_input("{}: axis '{}' points must be numbers", where, c.axes.back());
      p.push_back(v.get<double>());
    }
    c.points.push_back(std::move(p));
  }
  for (const auto& v : j.at("values")) {
    if (!v.is_number()) bad_input("{}: 'values' must be numbers", where);
    c.values.push_back(v.get<double>());
  }
  c.validate(where);
  return c;
}

}  // namespace tandem::analysis
