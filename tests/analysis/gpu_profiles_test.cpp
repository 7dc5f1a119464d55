// The built-in GPU profiles' curves against the measurements they were built from: every
// GEMM and attention figure measured on the H200 comes back from the planner's own timing
// (DeviceTime) within 10%; h100 shares them, a100 scales them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "analysis/device_time.hpp"
#include "tandem/analysis/hardware.hpp"

using namespace tandem::analysis;

namespace {

// Measured on one H200 (PyTorch 2.11, CUDA events, medians of 10 after warm-up), TFLOP/s.
struct Gemm {
  std::string dtype;
  double m, k, n, tflops;
};
std::vector<Gemm> gemms() {
  std::vector<Gemm> v;
  const double ms[] = {256, 1024, 4096, 16384, 65536};
  struct Row {
    double k, n, t[5];
  };
  const Row rows[] = {{16384, 2560, {525, 690, 833, 826, 753}},
                      {16384, 13312, {531, 589, 752, 712, 687}},
                      {6656, 16384, {496, 553, 565, 596, 674}},
                      {4096, 28672, {535, 656, 679, 687, 690}}};
  for (const Row& r : rows)
    for (size_t i = 0; i < 5; ++i) v.push_back({"bf16", ms[i], r.k, r.n, r.t[i]});
  v.push_back({"fp8", 4096, 16384, 13312, 1466});
  v.push_back({"fp8", 16384, 16384, 13312, 1373});
  return v;
}

struct Attn {
  double heads, kv_heads, n;
  bool causal;
  double tflops;
};
std::vector<Attn> attentions() {
  std::vector<Attn> v;
  const double ns[] = {1024, 4096, 16384, 65536};
  const double c16[] = {91, 449, 642, 606}, u16[] = {203, 653, 690};
  const double c4[] = {222, 526, 663, 608}, u4[] = {490, 665, 651};
  for (size_t i = 0; i < 4; ++i) {
    v.push_back({16, 1, ns[i], true, c16[i]});
    v.push_back({32, 8, ns[i], true, c4[i]});
  }
  for (size_t i = 0; i < 3; ++i) {
    v.push_back({16, 1, ns[i], false, u16[i]});
    v.push_back({32, 8, ns[i], false, u4[i]});
  }
  return v;
}

// The rate the planner gives a GEMM of the profile: 2 M K N FLOPs over its seconds.
double gemm_rate(const HardwareProfile& hw, const Gemm& g) {
  const DeviceTime dt(hw, g.dtype, hw.attention_dtype(), 0, 1);
  const double bytes = g.k * g.n * (g.dtype == "fp8" ? 1 : 2);
  return 2 * g.m * g.k * g.n / dt.matmul(g.m, g.n, g.k, bytes);
}

// The rate the planner gives an attention call: a causal n x n call has n(n+1)/2 visible
// pairs per head and its queries see (n+1)/2 keys on average; an unmasked one n^2 and n.
double attention_rate(const HardwareProfile& hw, const Attn& a) {
  const DeviceTime dt(hw, "bf16", hw.attention_dtype(), 0, 1);
  const double d = 128;
  const double pairs = a.causal ? a.n * (a.n + 1) / 2 : a.n * a.n;
  const double keys = pairs / a.n;
  const double kv_bytes = a.n * 2 * a.kv_heads * d * 2;
  const double t = dt.attention(a.heads * pairs, d, a.n, keys, a.heads / a.kv_heads, a.heads, kv_bytes);
  return 4 * d * a.heads * pairs / t;
}

}  // namespace

TEST(GpuProfiles, H200ReproducesEveryGemmWithin10Percent) {
  const HardwareProfile h200 = *builtin_profile("h200");
  double worst = 0;
  for (const Gemm& g : gemms()) {
    const double err = gemm_rate(h200, g) / (g.tflops * 1e12) - 1;
    worst = std::max(worst, std::abs(err));
    EXPECT_LE(std::abs(err), 0.10) << g.dtype << " M=" << g.m << " K=" << g.k << " N=" << g.n
                                   << ": " << gemm_rate(h200, g) / 1e12 << " vs " << g.tflops;
  }
  std::printf("largest GEMM error: %.2f%%\n", 100 * worst);
}

TEST(GpuProfiles, H200ReproducesEveryAttentionCallWithin10Percent) {
  const HardwareProfile h200 = *builtin_profile("h200");
  double worst = 0;
  for (const Attn& a : attentions()) {
    const double err = attention_rate(h200, a) / (a.tflops * 1e12) - 1;
    worst = std::max(worst, std::abs(err));
    EXPECT_LE(std::abs(err), 0.10) << a.heads << "/" << a.kv_heads << " heads, n=" << a.n
                                   << (a.causal ? " causal" : " unmasked") << ": "
                                   << attention_rate(h200, a) / 1e12 << " vs " << a.tflops;
  }
  std::printf("largest attention error: %.2f%%\n", 100 * worst);
}

TEST(GpuProfiles, H200StreamsAtTheMeasuredCopyRate) {
  // 4.25 TB/s of a device-to-device copy, bytes read and written counted: what streaming
  // reads get.
  const HardwareProfile h200 = *builtin_profile("h200");
  const DeviceTime dt(h200, "bf16", "bf16", 0, 1);
  EXPECT_NEAR(1e12 / dt.stream(1e12), 4.25e12, 1e9);
  EXPECT_GT(h200.memory_capacity, 140e9);
  EXPECT_EQ(h200.flops, builtin_profile("h100")->flops);  // the same compute
}

TEST(GpuProfiles, H100SharesTheCurvesAndA100ScalesThem) {
  const HardwareProfile h100 = *builtin_profile("h100"), a100 = *builtin_profile("a100");
  for (const Gemm& g : gemms()) {
    EXPECT_NEAR(gemm_rate(h100, g), gemm_rate(*builtin_profile("h200"), g), 1e6);
    if (g.dtype == "bf16") {
      EXPECT_NEAR(gemm_rate(a100, g) / gemm_rate(h100, g), 312 / 989.4, 1e-9);
    }
  }
  for (const Attn& a : attentions())
    EXPECT_NEAR(attention_rate(a100, a) / attention_rate(h100, a), 312 / 989.4, 1e-9);
  // The A100 has no fp8: fp8 weights compute at the bf16 curve.
  EXPECT_FALSE(a100.curves.matmul.count("fp8"));
}

TEST(GpuProfiles, CellsBetweenMeasurementsStayInsideTheMeasuredRange) {
  // However the grid is filled between the measured calls, a lookup never leaves the
  // range of what was measured (no extrapolation).
  const HardwareProfile h200 = *builtin_profile("h200");
  const Curve& c = h200.curves.attention;
  const auto [lo, hi] = std::minmax_element(c.values.begin(), c.values.end());
  EXPECT_GE(*lo, 91e12 * 0.999);
  EXPECT_LE(*hi, 690e12 * 1.001);
  const DeviceTime dt(h200, "bf16", "bf16", 0, 1);
  for (double q : {1.0, 300.0, 8192.0, 1e6})
    for (double k : {1.0, 3000.0, 1e6}) {
      const double r = 4 * 128 * 16 * q * k / dt.attention(16 * q * k, 128, q, k, 16, 16, 0);
      EXPECT_GE(r, 91e12 * 0.999);
      EXPECT_LE(r, 690e12 * 1.001);
    }
}
