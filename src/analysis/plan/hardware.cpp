// Built-in hardware profiles (numbers from vendor data sheets, the GPUs' curves from
// measurements; see docs/planner.md) and the JSON profile format.
#include "tandem/analysis/hardware.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <nlohmann/json.hpp>

#include "tandem/core/error.hpp"
#include "tandem/core/text_file.hpp"

namespace tandem::analysis {

double HardwareProfile::flops_for(const std::string& dtype) const {
  for (const std::string& k : {dtype, std::string("bf16"), std::string("f32")})
    if (auto it = flops.find(k); it != flops.end()) return it->second;
  return 0;
}

void HardwareProfile::validate(const std::string& where) const {
  auto positive = [&](const char* field, double v) {
    if (!(v > 0) || !std::isfinite(v)) bad_input("{}: field '{}' must be a positive number", where, field);
  };
  if (flops.empty()) bad_input("{}: field 'flops' must name at least one type", where);
  for (const auto& [k, v] : flops)
    if (!(v > 0) || !std::isfinite(v)) bad_input("{}: field 'flops.{}' must be a positive number", where, k);
  if (flops_for("bf16") <= 0) bad_input("{}: field 'flops' needs 'bf16' or 'f32'", where);
  if (!(efficiency > 0 && efficiency <= 1)) bad_input("{}: field 'efficiency' must be in (0, 1]", where);
  if (!(memory_efficiency > 0 && memory_efficiency <= 1))
    bad_input("{}: field 'memory_efficiency' must be in (0, 1]", where);
  positive("memory_bandwidth", memory_bandwidth);
  positive("memory_capacity", memory_capacity);
  if (activation_bytes != 2 && activation_bytes != 4)
    bad_input("{}: field 'activation_bytes' must be 2 or 4", where);
  if (devices_per_node < 1) bad_input("{}: field 'devices_per_node' must be >= 1", where);
  for (const CoreWork w : {CoreWork::Product, CoreWork::Attention, CoreWork::Stream})
    if (!(core_rate.of(w) >= 0) || !std::isfinite(core_rate.of(w)))
      bad_input("{}: field 'core_rate' must hold rates >= 0", where);
  if (!core_rates.empty() && core_rates.size() != size_t(threads))
    bad_input("{}: field 'core_rates' must hold one entry per thread ({}), not {}", where, threads,
              core_rates.size());
  for (const CoreRates& r : core_rates)
    for (const CoreWork w : {CoreWork::Product, CoreWork::Attention, CoreWork::Stream})
      if (!(r.of(w) > 0) || !std::isfinite(r.of(w)) || !(r.of(w, true) >= 0) || !std::isfinite(r.of(w, true)))
        bad_input("{}: field 'core_rates' must hold positive rates (busy ones >= 0)", where);
  if (!has_links) return;
  positive("intra_node.bandwidth", intra.bandwidth);
  positive("inter_node.bandwidth", inter.bandwidth);
  if (!(intra.latency >= 0)) bad_input("{}: field 'intra_node.latency' must be >= 0", where);
  if (!(inter.latency >= 0)) bad_input("{}: field 'inter_node.latency' must be >= 0", where);
}

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kGiB = kMiB * 1024.0;

// ---- Measured GPU curves ----
//
// Measured on one H200 (PyTorch 2.11, bf16 unless said, CUDA events, the median of 10
// calls after warm-up); facts given to us, kept here as data. The H100 has the same
// compute (the same GH100 chip, the same Tensor Core peaks), so h100 carries the same
// curves; a100 carries them scaled by the ratio of dense bf16 peaks, 312 / 989.4 (an
// estimate, not a measurement of an A100).

// Dense bf16 GEMM [M x K] x [K x N], TFLOP/s at M = 256, 1024, 4096, 16384, 65536, for four
// weight shapes K x N. Their element counts, 41.9M, 109M, 117M, 218M, are the curve's
// "elements" points; M is its "tokens". Two shapes have close element counts (K = 6656,
// N = 16384: 109M; K = 4096, N = 28672: 117M) and different rates: the grid keeps both
// as measured, so every measured shape reads its own figures. A shape between them (or
// between any two) is read log-log between its two neighbours by element count, which
// says nothing of its K/N aspect; below 41.9M and above 218M the nearest row holds.
constexpr double kGemmTokens[] = {256, 1024, 4096, 16384, 65536};
struct GemmRow {
  double k, n;          // the weight shape, K x N
  double tflops[5];     // at kGemmTokens
};
constexpr GemmRow kGemmBf16[] = {
    {16384, 2560, {525, 690, 833, 826, 753}},    // 41.9M
    {6656, 16384, {496, 553, 565, 596, 674}},    // 109M
    {4096, 28672, {535, 656, 679, 687, 690}},    // 117M
    {16384, 13312, {531, 589, 752, 712, 687}},   // 218M
};
// FP8 e4m3 (torch._scaled_mm) at K = 16384, N = 13312: TFLOP/s at M = 4096 and 16384.
constexpr double kFp8Tokens[] = {4096, 16384};
constexpr double kFp8Tflops[] = {1466, 1373};
constexpr size_t kFp8Row = 3;  // that shape's row of kGemmBf16

// Flash attention (PyTorch SDPA), head dim 128, query length = key length = n, TFLOP/s
// (4 d FLOPs per visible query-key pair and query head; a causal call has n(n+1)/2
// pairs). Two head layouts: 16 query heads sharing 1 KV head (group 16) and 32 query
// heads over 8 KV heads (group 4).
struct AttnPoint {
  double group, n;
  bool causal;
  double tflops;
};
constexpr AttnPoint kAttention[] = {
    {16, 1024, true, 91},   {16, 4096, true, 449},   {16, 16384, true, 642},
    {16, 65536, true, 606}, {16, 1024, false, 203},  {16, 4096, false, 653},
    {16, 16384, false, 690},
    {4, 1024, true, 222},   {4, 4096, true, 526},    {4, 16384, true, 663},
    {4, 65536, true, 608},  {4, 1024, false, 490},   {4, 4096, false, 665},
    {4, 16384, false, 651},
};

// HBM device-to-device copy on the H200: 4.25 TB/s counting the bytes read and the bytes
// written. HBM moves reads and writes over the same bus, so a copy's read + write rate is
// what the memory sustains in all; a streaming read (decode's weights and cache) gets at
// least as much (no read/write turnarounds). The profiles take that rate as the fraction
// of the data-sheet bandwidth streaming reaches: 4.25 / 4.8 on the H200, carried over to
// the H100 and A100, whose copies were not measured.
constexpr double kH200Bandwidth = 4.8e12;
constexpr double kH200Copy = 4.25e12;
constexpr double kStreamFraction = kH200Copy / kH200Bandwidth;

// Matmul curves per weight type, axes "tokens" x "elements", scaled by `scale`.
// bf16 (and fp16: same tensor-core rate) from the GEMM table; fp8 the bf16 curve times
// the measured fp8 / bf16 ratio at each M, at the one shape measured in both: 1466/752 =
// 1.95 at M <= 4096, 1373/712 = 1.93 at M >= 16384 (log-log between). Below M = 4096 fp8
// thus follows the shape of the bf16 curve; at K = 16384, N = 13312 it reads the two
// measured fp8 figures exactly.
std::map<std::string, Curve> gemm_curves(double scale, bool fp8) {
  const std::vector<double> tokens(std::begin(kGemmTokens), std::end(kGemmTokens));
  std::vector<double> elements;
  for (const GemmRow& r : kGemmBf16) elements.push_back(r.k * r.n);
  Curve bf16 = Curve::grid({"tokens", "elements"}, {tokens, elements});
  for (size_t t = 0; t < tokens.size(); ++t)
    for (size_t e = 0; e < elements.size(); ++e)
      bf16.values[bf16.index({t, e})] = kGemmBf16[e].tflops[t] * 1e12 * scale;
  std::map<std::string, Curve> m{{"bf16", bf16}, {"fp16", bf16}};
  if (!fp8) return m;
  // The fp8 / bf16 ratio at the measured M, over "tokens".
  Curve ratio = Curve::grid({"tokens"}, {{std::begin(kFp8Tokens), std::end(kFp8Tokens)}});
  for (size_t i = 0; i < ratio.values.size(); ++i) {
    const auto t = std::find(tokens.begin(), tokens.end(), kFp8Tokens[i]) - tokens.begin();
    ratio.values[i] = kFp8Tflops[i] / kGemmBf16[kFp8Row].tflops[t];
  }
  Curve f = bf16;
  for (size_t t = 0; t < tokens.size(); ++t)
    for (size_t e = 0; e < elements.size(); ++e)
      f.values[f.index({t, e})] *= ratio.at({{"tokens", tokens[t]}});
  m["fp8"] = f;
  return m;
}

// The attention curve, axes "group" x "queries" x "keys" (mean keys a query sees). A
// causal n x n call has queries n and mean keys (n+1)/2, an unmasked one queries n and
// keys n: the measured calls sit on the grid's cells (n, n/2) and (n, n), and read their
// own figures there (the half key a causal call adds moves it 0.1% at n = 1024).
// A cell with no measurement takes the rate of the measured calls of its group with the
// same work per head, queries x keys: log-log between the two measured calls nearest in
// work (below the smallest and above the largest, theirs). Work per call is what the
// measurements follow at small sizes (a causal and an unmasked call at n = 1024 take the
// same ~45 us: launch and one wave over the SMs, not their pairs, set their time); at
// large ones every rate is 600-700 TFLOP/s. A curve over mean keys cannot tell a causal
// n x n call from an unmasked n x n/2 one: both read the causal figure.
Curve attention_curve(double scale) {
  const std::vector<double> groups = {4, 16}, queries = {1024, 4096, 16384, 65536},
                            keys = {512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
  auto cell_keys = [](const AttnPoint& p) { return p.causal ? p.n / 2 : p.n; };
  Curve c = Curve::grid({"group", "queries", "keys"}, {groups, queries, keys});
  for (size_t g = 0; g < groups.size(); ++g) {
    // This group's measured calls as a curve over their work per head.
    std::vector<std::pair<double, double>> by_work;
    for (const AttnPoint& p : kAttention)
      if (p.group == groups[g]) by_work.emplace_back(p.n * cell_keys(p), p.tflops);
    std::sort(by_work.begin(), by_work.end());
    Curve work;
    work.axes = {"work"};
    work.points.resize(1);
    for (const auto& [w, r] : by_work) work.points[0].push_back(w), work.values.push_back(r);
    for (size_t q = 0; q < queries.size(); ++q)
      for (size_t k = 0; k < keys.size(); ++k) {
        double rate = work.at({{"work", queries[q] * keys[k]}});
        for (const AttnPoint& p : kAttention)  // a measured cell: its own figure
          if (p.group == groups[g] && p.n == queries[q] && cell_keys(p) == keys[k]) rate = p.tflops;
        c.values[c.index({g, q, k})] = rate * 1e12 * scale;
      }
  }
  return c;
}

// NVLink: the data sheets give line rates (NVLink 4: 450 GB/s per direction, NVLink 3:
// 300). NCCL gets ~80% of the line rate after its protocol overhead, 370 GB/s on NVLink 4:
// the bus bandwidth nccl-tests shows for send/recv and ring all-reduces (S. Jeaugey, NCCL
// maintainer, NVIDIA/nccl-tests issue #212, 2024). NVLink SHARP all-reduces reach ~480
// GB/s bus bandwidth on 8 H100s; the planner's all-reduce is the ring's, on the link's rate.
constexpr double kNcclNvlinkFraction = 370.0 / 450.0;

HardwareProfile h100() {
  HardwareProfile p;
  p.name = "h100";
  p.description = "8x H100 SXM5 80GB per node, NVLink 4 inside, InfiniBand NDR 400 Gb/s per GPU across";
  // Dense (no sparsity) tensor-core peaks; f32 is the non-tensor-core rate.
  p.flops = {{"bf16", 989.4e12}, {"fp16", 989.4e12}, {"fp8", 1978.9e12}, {"f32", 66.9e12}};
  p.efficiency = 0.55;  // what reads no curve (attention of f32 activations)
  p.memory_bandwidth = 3.35e12;  // HBM3
  p.memory_efficiency = kStreamFraction;
  p.memory_capacity = 81559 * kMiB;  // what the driver reports for the 80 GB part
  p.activation_bytes = 2;
  p.devices_per_node = 8;
  p.intra = {450e9 * kNcclNvlinkFraction, 2e-6};  // NVLink 4 as NCCL drives it
  p.inter = {50e9, 5e-6};   // one 400 Gb/s NIC per GPU
  p.curves.matmul = gemm_curves(1.0, true);
  p.curves.attention = attention_curve(1.0);
  return p;
}

HardwareProfile h200() {
  HardwareProfile p = h100();
  p.name = "h200";
  p.description = "8x H200 SXM 141GB per node, NVLink 4 inside, InfiniBand NDR 400 Gb/s per GPU across";
  p.memory_bandwidth = kH200Bandwidth;  // HBM3e
  p.memory_capacity = 143771 * kMiB;    // what the driver reports for the 141 GB part
  return p;
}

HardwareProfile a100() {
  HardwareProfile p;
  p.name = "a100";
  p.description = "8x A100 SXM4 80GB per node, NVLink 3 inside, InfiniBand HDR 200 Gb/s per GPU across";
  p.flops = {{"bf16", 312e12}, {"fp16", 312e12}, {"f32", 19.5e12}};
  p.efficiency = 0.55;
  p.memory_bandwidth = 2.039e12;  // HBM2e
  p.memory_efficiency = kStreamFraction;
  p.memory_capacity = 81920 * kMiB;
  p.activation_bytes = 2;
  p.devices_per_node = 8;
  p.intra = {300e9 * kNcclNvlinkFraction, 2e-6};  // NVLink 3 as NCCL drives it
  p.inter = {25e9, 5e-6};   // one 200 Gb/s NIC per GPU
  // The H200's curves scaled by the ratio of dense bf16 peaks; no fp8 (fp8 weights
  // compute at the bf16 curve).
  p.curves.matmul = gemm_curves(312 / 989.4, false);
  p.curves.attention = attention_curve(312 / 989.4);
  return p;
}

HardwareProfile cpu_this() {
  HardwareProfile p;
  p.name = "cpu-this";
  p.description =
      "this machine: 2 Zen 4 cores, one rank per core; memory and bandwidth split between them; "
      "MPI shared memory inside, TCP across";
  // Measured FP32 FMA peak of one core; tandem's CPU kernels accumulate in f32 for every
  // weight type, so every type gets the same peak.
  for (const char* t : {"f32", "bf16", "fp16", "q8_0", "q4_0"}) p.flops[t] = 115e9;
  p.efficiency = 0.5;
  // Decode of the small f32 preset streams 400 MB per token: 16 ms on one core alone
  // (25 GB/s), ~30 ms each with two at once: about 12 GB/s per core when both stream.
  p.memory_bandwidth = 12e9;
  p.memory_efficiency = 1.0; // measured, not a data-sheet peak
  p.memory_capacity = 12 * kGiB;  // 24 GiB shared by 2 ranks
  p.activation_bytes = 4;
  p.devices_per_node = 2;
  p.intra = {5e9, 2e-6};     // Open MPI shared memory
  p.inter = {0.5e9, 50e-6};  // Open MPI over TCP
  return p;
}

}  // namespace

std::optional<HardwareProfile> builtin_profile(std::string_view name) {
  if (name == "h100") return h100();
  if (name == "h200") return h200();
  if (name == "a100") return a100();
  if (name == "cpu-this") return cpu_this();
  return std::nullopt;
}

const std::vector<std::string>& builtin_profile_names() {
  static const std::vector<std::string> names = {"h100", "h200", "a100", "cpu-this"};
  return names;
}

std::string shape_matmul_key(const std::string& dtype, MatKind kind, double rows, double cols) {
  const char* k = kind == MatKind::Qkv ? "qkv" : kind == MatKind::GateUp ? "gate_up" : "plain";
  return fmt::format("{} {} {}x{}", dtype == "fp16" ? std::string("f16") : dtype, k,
                     std::llround(rows), std::llround(cols));
}

std::string shape_attention_key(double head_dim, double group) {
  return fmt::format("d{} g{}", std::llround(head_dim), std::llround(group));
}

namespace {

// The single curves of ProfileCurves by JSON name.
std::vector<std::pair<const char*, Curve ProfileCurves::*>> single_curves() {
  return {{"attention", &ProfileCurves::attention},
          {"op_overhead", &ProfileCurves::op_overhead},
          {"bandwidth", &ProfileCurves::bandwidth},
          {"intra_message", &ProfileCurves::intra_message},
          {"inter_message", &ProfileCurves::inter_message},
          {"intra_alltoall", &ProfileCurves::intra_alltoall},
          {"inter_alltoall", &ProfileCurves::inter_alltoall}};
}

// The curve maps of ProfileCurves by JSON name.
std::vector<std::pair<const char*, std::map<std::string, Curve> ProfileCurves::*>> curve_maps() {
  return {{"matmul", &ProfileCurves::matmul},
          {"shape_matmul", &ProfileCurves::shape_matmul},
          {"shape_attention", &ProfileCurves::shape_attention}};
}

nlohmann::json curves_to_json(const ProfileCurves& c) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, member] : curve_maps())
    for (const auto& [key, curve] : c.*member) j[name][key] = curve_to_json(curve);
  for (const auto& [name, member] : single_curves())
    if (!(c.*member).empty()) j[name] = curve_to_json(c.*member);
  return j;
}

ProfileCurves curves_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) bad_input("{}: must be an object of curves", where);
  ProfileCurves c;
  for (const auto& [key, v] : j.items()) {
    bool known = false;
    for (const auto& [name, member] : curve_maps()) {
      if (key != name) continue;
      if (!v.is_object()) bad_input("{}.{}: must be an object of curves by key", where, key);
      for (const auto& [k, curve] : v.items())
        (c.*member)[k] = curve_from_json(curve, where + "." + key + "." + k);
      known = true;
    }
    if (known) continue;
    // The one-time costs of a fresh process, which earlier profiles held and nothing reads
    // since compare measures steady prefills.
    if (key == "graph_build" || key == "file_fault" || key == "intra_first_contact" ||
        key == "inter_first_contact")
      continue;
    for (const auto& [name, member] : single_curves())
      if (key == name) c.*member = curve_from_json(v, where + "." + key), known = true;
    if (!known) bad_input("{}: unknown curve '{}'", where, key);
  }
  return c;
}

}  // namespace

nlohmann::json core_rates_to_json(const CoreRates& r) {
  nlohmann::json j = {{"product", r.product}, {"attention", r.attention}, {"stream", r.stream}};
  if (r.busy_product > 0 || r.busy_attention > 0 || r.busy_stream > 0)
    j["busy"] = {{"product", r.busy_product}, {"attention", r.busy_attention}, {"stream", r.busy_stream}};
  return j;
}

CoreRates core_rates_from_json(const nlohmann::json& j, const std::string& where, const std::string& field) {
  if (!j.is_object()) bad_input("{}: field '{}' must hold objects of product, attention and stream FLOP/s", where, field);
  CoreRates r;
  auto read = [&](const nlohmann::json& o, bool busy, const std::string& prefix) {
    for (const auto& [key, w] : {std::pair{"product", CoreWork::Product}, std::pair{"attention", CoreWork::Attention},
                                 std::pair{"stream", CoreWork::Stream}}) {
      if (!o.contains(key)) continue;
      if (!o.at(key).is_number()) bad_input("{}: field '{}.{}{}' must be a number", where, field, prefix, key);
      r.of(w, busy) = o.at(key).get<double>();
    }
  };
  read(j, false, "");
  if (j.contains("busy")) {
    if (!j.at("busy").is_object())
      bad_input("{}: field '{}.busy' must be an object of product, attention and stream FLOP/s", where, field);
    read(j.at("busy"), true, "busy.");
  }
  return r;
}

HardwareProfile profile_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) bad_input("{}: a hardware profile must be a JSON object", where);
  HardwareProfile p;
  auto number = [&](const nlohmann::json& o, const char* key, const std::string& field,
                    bool required, double fallback) -> double {
    if (!o.contains(key)) {
      if (required) bad_input("{}: field '{}' is missing", where, field);
      return fallback;
    }
    if (!o.at(key).is_number()) bad_input("{}: field '{}' must be a number", where, field);
    return o.at(key).get<double>();
  };
  auto link = [&](const char* key) {
    if (!j.contains(key) || !j.at(key).is_object())
      bad_input("{}: field '{}' must be an object with bandwidth and latency", where, key);
    const auto& o = j.at(key);
    const std::string k = key;
    return Link{number(o, "bandwidth", k + ".bandwidth", true, 0),
                number(o, "latency", k + ".latency", false, 0)};
  };
  if (j.contains("name") && !j.at("name").is_string()) bad_input("{}: field 'name' must be a string", where);
  p.name = j.value("name", where);
  if (j.contains("description") && j.at("description").is_string()) p.description = j.at("description");
  if (!j.contains("flops") || !j.at("flops").is_object())
    bad_input("{}: field 'flops' must be an object of FLOP/s per type", where);
  for (const auto& [k, v] : j.at("flops").items()) {
    if (!v.is_number()) bad_input("{}: field 'flops.{}' must be a number", where, k);
    p.flops[k] = v.get<double>();
  }
  p.efficiency = number(j, "efficiency", "efficiency", true, 0);
  p.memory_bandwidth = number(j, "memory_bandwidth", "memory_bandwidth", true, 0);
  p.memory_efficiency = number(j, "memory_efficiency", "memory_efficiency", false, 1.0);
  p.memory_capacity = number(j, "memory_capacity", "memory_capacity", true, 0);
  const double ab = number(j, "activation_bytes", "activation_bytes", false, 2);
  p.activation_bytes = ab == 4 ? 4 : ab == 2 ? 2 : 0;
  const double dpn = number(j, "devices_per_node", "devices_per_node", false, 1);
  p.devices_per_node = dpn >= 1 && dpn <= 1e6 && dpn == std::floor(dpn) ? int(dpn) : 0;
  // Both links or neither (a profile of one device: see HardwareProfile::has_links).
  p.has_links = j.contains("intra_node") || j.contains("inter_node");
  if (p.has_links) {
    p.intra = link("intra_node");
    p.inter = link("inter_node");
  }
  const double th = number(j, "threads", "threads", false, 0);
  if (!(th >= 0 && th <= 1e6 && th == std::floor(th))) bad_input("{}: field 'threads' must be a whole number >= 0", where);
  p.threads = int(th);
  if (j.contains("core_rate")) p.core_rate = core_rates_from_json(j.at("core_rate"), where, "core_rate");
  if (j.contains("core_rates")) {
    if (!j.at("core_rates").is_array()) bad_input("{}: field 'core_rates' must be an array", where);
    for (const auto& x : j.at("core_rates")) p.core_rates.push_back(core_rates_from_json(x, where, "core_rates"));
  }
  if (j.contains("curves")) p.curves = curves_from_json(j.at("curves"), where + ": curves");
  p.validate(where);
  return p;
}

nlohmann::json profile_to_json(const HardwareProfile& p) {
  nlohmann::json j;
  j["name"] = p.name;
  j["description"] = p.description;
  j["flops"] = p.flops;
  j["efficiency"] = p.efficiency;
  j["memory_bandwidth"] = p.memory_bandwidth;
  j["memory_efficiency"] = p.memory_efficiency;
  j["memory_capacity"] = p.memory_capacity;
  j["activation_bytes"] = p.activation_bytes;
  j["devices_per_node"] = p.devices_per_node;
  if (p.has_links) {
    j["intra_node"] = {{"bandwidth", p.intra.bandwidth}, {"latency", p.intra.latency}};
    j["inter_node"] = {{"bandwidth", p.inter.bandwidth}, {"latency", p.inter.latency}};
  }
  if (p.threads > 0) j["threads"] = p.threads;
  if (p.core_rate.product > 0 || p.core_rate.attention > 0 || p.core_rate.stream > 0)
    j["core_rate"] = core_rates_to_json(p.core_rate);
  if (!p.core_rates.empty()) {
    j["core_rates"] = nlohmann::json::array();
    for (const CoreRates& r : p.core_rates) j["core_rates"].push_back(core_rates_to_json(r));
  }
  const nlohmann::json c = curves_to_json(p.curves);
  if (!c.empty()) j["curves"] = c;
  return j;
}

HardwareProfile load_profile(const std::string& name_or_path, const std::string& flag) {
  if (auto p = builtin_profile(name_or_path)) return *p;
  std::error_code ec;
  if (!std::filesystem::exists(name_or_path, ec)) {
    std::string names;
    for (const auto& n : builtin_profile_names()) names += (names.empty() ? "" : ", ") + n;
    bad_input("{} '{}': not a built-in profile ({}) nor a readable profile file", flag,
              name_or_path, names);
  }
  const std::string text = read_file_bounded(name_or_path, flag, kMaxJsonFileBytes);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    bad_input("{}: not valid JSON ({})", name_or_path, e.what());
  }
  return profile_from_json(j, name_or_path);
}

}  // namespace tandem::analysis
