#pragma once
// A measured quantity (FLOP/s, bytes/s, seconds) as a function of a few positive
// coordinates (threads, tokens per call, matrix elements, message bytes, ...), known on
// a grid and read between its points: piecewise linear in the logarithms of the
// coordinates and of the value, held constant beyond the grid's ends.
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tandem::analysis {

struct Curve {
  // Axis names and, per axis, its points (increasing, > 0).
  std::vector<std::string> axes;
  std::vector<std::vector<double>> points;
  // One value per grid point (> 0), row-major: the last axis varies fastest.
  std::vector<double> values;

  bool empty() const { return values.empty(); }
  // The value at the given coordinates, by axis name. Coordinates of names the curve has
  // no axis for are ignored (it does not depend on them); every axis must be given.
  double at(std::initializer_list<std::pair<std::string_view, double>> coords) const;
  // A grid of the given axes, every value `fill` (set them with index()).
  static Curve grid(std::vector<std::string> axes, std::vector<std::vector<double>> points,
                    double fill = 0);
  // Every value times f.
  void scale(double f) {
    for (double& v : values) v *= f;
  }
  // The flat index of the grid point with these per-axis indices.
  size_t index(std::initializer_list<size_t> at) const;
  // Throws Error(BadInput) naming `where`'s field at fault.
  void validate(const std::string& where) const;
};

nlohmann::json curve_to_json(const Curve& c);
Curve curve_from_json(const nlohmann::json& j, const std::string& where);

}  // namespace tandem::analysis
