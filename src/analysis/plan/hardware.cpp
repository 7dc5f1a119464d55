// Built-in hardware profiles (numbers from vendor data sheets; see docs/planner.md) and
// the JSON profile format.
#include "tandem/analysis/hardware.hpp"

#include <cmath>
#include <filesystem>
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
  if (!has_links) return;
  positive("intra_node.bandwidth", intra.bandwidth);
  positive("inter_node.bandwidth", inter.bandwidth);
  if (!(intra.latency >= 0)) bad_input("{}: field 'intra_node.latency' must be >= 0", where);
  if (!(inter.latency >= 0)) bad_input("{}: field 'inter_node.latency' must be >= 0", where);
}

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kGiB = kMiB * 1024.0;

HardwareProfile h100() {
  HardwareProfile p;
  p.name = "h100";
  p.description = "8x H100 SXM5 80GB per node, NVLink 4 inside, InfiniBand NDR 400 Gb/s per GPU across";
  // Dense (no sparsity) tensor-core peaks; f32 is the non-tensor-core rate.
  p.flops = {{"bf16", 989.4e12}, {"fp16", 989.4e12}, {"fp8", 1978.9e12}, {"f32", 66.9e12}};
  p.efficiency = 0.55;
  p.memory_bandwidth = 3.35e12;  // HBM3
  p.memory_efficiency = 0.8;
  p.memory_capacity = 81559 * kMiB;  // what the driver reports for the 80 GB part
  p.activation_bytes = 2;
  p.devices_per_node = 8;
  p.intra = {450e9, 2e-6};  // NVLink 4: 900 GB/s both directions
  p.inter = {50e9, 5e-6};   // one 400 Gb/s NIC per GPU
  return p;
}

HardwareProfile a100() {
  HardwareProfile p;
  p.name = "a100";
  p.description = "8x A100 SXM4 80GB per node, NVLink 3 inside, InfiniBand HDR 200 Gb/s per GPU across";
  p.flops = {{"bf16", 312e12}, {"fp16", 312e12}, {"f32", 19.5e12}};
  p.efficiency = 0.55;
  p.memory_bandwidth = 2.039e12;  // HBM2e
  p.memory_efficiency = 0.8;
  p.memory_capacity = 81920 * kMiB;
  p.activation_bytes = 2;
  p.devices_per_node = 8;
  p.intra = {300e9, 2e-6};  // NVLink 3: 600 GB/s both directions
  p.inter = {25e9, 5e-6};   // one 200 Gb/s NIC per GPU
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
  if (name == "a100") return a100();
  if (name == "cpu-this") return cpu_this();
  return std::nullopt;
}

const std::vector<std::string>& builtin_profile_names() {
  static const std::vector<std::string> names = {"h100", "a100", "cpu-this"};
  return names;
}

namespace {

// The single curves of ProfileCurves by JSON name.
std::vector<std::pair<const char*, Curve ProfileCurves::*>> single_curves() {
  return {{"attention", &ProfileCurves::attention},
          {"op_overhead", &ProfileCurves::op_overhead},
          {"graph_build", &ProfileCurves::graph_build},
          {"file_fault", &ProfileCurves::file_fault},
          {"bandwidth", &ProfileCurves::bandwidth},
          {"intra_message", &ProfileCurves::intra_message},
          {"inter_message", &ProfileCurves::inter_message},
          {"intra_alltoall", &ProfileCurves::intra_alltoall},
          {"inter_alltoall", &ProfileCurves::inter_alltoall},
          {"intra_first_contact", &ProfileCurves::intra_first_contact},
          {"inter_first_contact", &ProfileCurves::inter_first_contact}};
}

nlohmann::json curves_to_json(const ProfileCurves& c) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [type, curve] : c.matmul) j["matmul"][type] = curve_to_json(curve);
  for (const auto& [name, member] : single_curves())
    if (!(c.*member).empty()) j[name] = curve_to_json(c.*member);
  return j;
}

ProfileCurves curves_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) bad_input("{}: must be an object of curves", where);
  ProfileCurves c;
  for (const auto& [key, v] : j.items()) {
    if (key == "matmul") {
      if (!v.is_object()) bad_input("{}.matmul: must be an object of curves per weight type", where);
      for (const auto& [type, curve] : v.items())
        c.matmul[type] = curve_from_json(curve, where + ".matmul." + type);
      continue;
    }
    bool known = false;
    for (const auto& [name, member] : single_curves())
      if (key == name) c.*member = curve_from_json(v, where + "." + key), known = true;
    if (!known) bad_input("{}: unknown curve '{}'", where, key);
  }
  return c;
}

}  // namespace

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
