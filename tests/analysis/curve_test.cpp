// Curves of a hardware profile: exact at grid points, log-log between them, constant
// beyond the ends, JSON round trip, and errors that name the field.
#include "tandem/analysis/curve.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "tandem/analysis/hardware.hpp"
#include "tandem/core/error.hpp"

using tandem::analysis::Curve;

namespace {
Curve two_by_two() {
  // rate(tokens, elements): 10 and 40 at tokens 1 and 16 (elements 100); 20 and 80 at 10000.
  Curve c = Curve::grid({"tokens", "elements"}, {{1, 16}, {100, 10000}});
  c.values[c.index({0, 0})] = 10;
  c.values[c.index({0, 1})] = 20;
  c.values[c.index({1, 0})] = 40;
  c.values[c.index({1, 1})] = 80;
  return c;
}
}  // namespace

TEST(Curve, ExactAtGridPointsAndLogLinearBetween) {
  const Curve c = two_by_two();
  EXPECT_DOUBLE_EQ(c.at({{"tokens", 1}, {"elements", 100}}), 10);
  EXPECT_DOUBLE_EQ(c.at({{"tokens", 16}, {"elements", 10000}}), 80);
  EXPECT_NEAR(c.at({{"tokens", 16}, {"elements", 100}}), 40, 1e-9);
  // tokens 4 is halfway in log between 1 and 16: the geometric mean of 10 and 40.
  EXPECT_NEAR(c.at({{"tokens", 4}, {"elements", 100}}), 20, 1e-9);
  // Both axes halfway: the geometric mean of all four corners.
  EXPECT_NEAR(c.at({{"tokens", 4}, {"elements", 1000}}), std::pow(10.0 * 20 * 40 * 80, 0.25), 1e-9);
}

TEST(Curve, ConstantBeyondTheEndsAndIgnoresOtherCoordinates) {
  const Curve c = two_by_two();
  EXPECT_DOUBLE_EQ(c.at({{"tokens", 0.1}, {"elements", 1}}), 10);
  EXPECT_DOUBLE_EQ(c.at({{"tokens", 1e6}, {"elements", 1e9}}), 80);
  EXPECT_DOUBLE_EQ(c.at({{"tokens", 1}, {"elements", 100}, {"threads", 7}}), 10);
  EXPECT_THROW(c.at({{"tokens", 1}}), tandem::Error);  // an axis without a coordinate
}

TEST(Curve, JsonRoundTripAndNamedErrors) {
  const Curve c = two_by_two();
  const Curve back = tandem::analysis::curve_from_json(tandem::analysis::curve_to_json(c), "t");
  EXPECT_EQ(back.axes, c.axes);
  EXPECT_EQ(back.points, c.points);
  EXPECT_EQ(back.values, c.values);
  auto j = tandem::analysis::curve_to_json(c);
  j["values"].erase(0);
  try {
    tandem::analysis::curve_from_json(j, "prof.json: curves.attention");
    FAIL() << "a grid of 4 with 3 values was accepted";
  } catch (const tandem::Error& e) {
    EXPECT_NE(std::string(e.what()).find("prof.json: curves.attention"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'values' has 3 numbers, the grid 4"), std::string::npos) << e.what();
  }
  auto k = tandem::analysis::curve_to_json(c);
  k["axes"][0]["points"] = {16, 1};
  EXPECT_THROW(tandem::analysis::curve_from_json(k, "t"), tandem::Error);
  auto z = tandem::analysis::curve_to_json(c);
  z["values"][2] = 0;
  EXPECT_THROW(tandem::analysis::curve_from_json(z, "t"), tandem::Error);
}

TEST(Curve, ProfileCarriesItsCurvesThroughJson) {
  auto h = *tandem::analysis::builtin_profile("cpu-this");
  h.threads = 2;
  h.curves.matmul["q8_0"] = two_by_two();
  h.curves.op_overhead = Curve::grid({"threads"}, {{1, 2}}, 3e-6);
  const auto j = tandem::analysis::profile_to_json(h);
  const auto back = tandem::analysis::profile_from_json(nlohmann::json::parse(j.dump()), "p.json");
  EXPECT_EQ(back.threads, 2);
  ASSERT_EQ(back.curves.matmul.count("q8_0"), 1u);
  EXPECT_EQ(back.curves.matmul.at("q8_0").values, h.curves.matmul.at("q8_0").values);
  EXPECT_DOUBLE_EQ(back.curves.op_overhead.at({{"threads", 2}}), 3e-6);
  auto bad = j;
  bad["curves"]["nonsense"] = bad["curves"]["op_overhead"];
  try {
    tandem::analysis::profile_from_json(bad, "p.json");
    FAIL();
  } catch (const tandem::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown curve 'nonsense'"), std::string::npos) << e.what();
  }
}
