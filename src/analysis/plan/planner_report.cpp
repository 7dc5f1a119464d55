// Presentation of a plan: the table, the JSON and the recommendation line.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "analysis/planner_format.hpp"
#include "tandem/analysis/planner.hpp"

namespace tandem::analysis {

std::string fmt_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (std::abs(bytes) >= 1024 && u < 4) bytes /= 1024, ++u;
  if (u == 0) return fmt::format("{:.0f} B", bytes);
  if (bytes >= 100) return fmt::format("{:.0f} {}", bytes, units[u]);
  if (bytes >= 10) return fmt::format("{:.1f} {}", bytes, units[u]);
  return fmt::format("{:.2f} {}", bytes, units[u]);
}

std::string fmt_seconds(double s) {
  if (s >= 1) return fmt::format("{:.3g} s", s);
  if (s >= 1e-3) return fmt::format("{:.3g} ms", s * 1e3);
  return fmt::format("{:.3g} us", s * 1e6);
}

std::string recommendation_reason(const Plan& plan) {
  const auto& v = plan.strategies;
  if (plan.best < 0) {
    const StrategyPlan* least = nullptr;
    for (const auto& s : v)
      if (s.applicable && (!least || s.memory_bytes < least->memory_bytes)) least = &s;
    return fmt::format(
        "nothing fits: the smallest footprint is {} with {} per device over {}; use more "
        "devices, a smaller --dtype or fewer tokens",
        least ? least->layout : "-", least ? fmt_bytes(least->memory_bytes) : "-",
        fmt_bytes(plan.request.hw.memory_capacity));
  }
  const auto& b = v[size_t(plan.best)];
  int n_fit = 0;
  const StrategyPlan* next = nullptr;
  for (const auto& s : v) {
    if (!s.applicable || !s.fits) continue;
    ++n_fit;
    if (&s != &b && (!next || s.seconds < next->seconds)) next = &s;
  }
  std::string why;
  if (b.strategy == "single")
    why = plan.request.gpus > 1 ? "communication would cost more than splitting the work saves"
                                : "one device";
  else
    why = b.note;
  while (!why.empty() && (why.back() == ' ' || why.back() == ';')) why.pop_back();
  std::string line = fmt::format("{} ({} prefill, fastest of {} that fit", b.layout,
                                 fmt_seconds(b.prefill_seconds), n_fit);
  if (next) line += fmt::format("; next: {} at {}", next->layout, fmt_seconds(next->prefill_seconds));
  line += "): ";
  if (b.tp > 1) {
    bool replicated_fits = false;
    for (const auto& s : v) replicated_fits |= s.applicable && s.tp == 1 && s.fits;
    const std::string split = "weights split";
    if (!replicated_fits && why.rfind(split, 0) == 0) why.replace(0, split.size(), "weights fit only split");
  }
  return line + why;
}

namespace {

nlohmann::json strategy_json(const StrategyPlan& s) {
  nlohmann::json j;
  j["strategy"] = s.strategy;
  j["layout"] = s.layout;
  j["applicable"] = s.applicable;
  j["fits"] = s.applicable && s.fits;
  j["note"] = s.note;
  if (!s.applicable) {
    for (const char* k : {"memory_bytes_per_device", "prefill_seconds", "decode_seconds_per_token",
                          "bytes_communicated_per_device", "seconds"})
      j[k] = nullptr;
    return j;
  }
  j["tp"] = s.tp;
  j["ulysses"] = s.ulysses;
  j["ring"] = s.ring;
  j["memory_bytes_per_device"] = s.memory_bytes;
  j["weight_bytes_per_device"] = s.weight_bytes;
  j["kv_bytes_per_device"] = s.kv_bytes;
  j["activation_bytes_per_device"] = s.activation_bytes;
  j["prefill_seconds"] = s.prefill_seconds;
  j["compute_seconds"] = s.compute_seconds;
  j["comm_seconds"] = s.comm_seconds;
  j["exposed_comm_seconds"] = s.exposed_comm_seconds;
  j["decode_seconds_per_token"] = s.decode_seconds_per_token;
  j["bytes_communicated_per_device"] = s.bytes_communicated_per_device;
  j["decode_bytes_per_token_per_device"] = s.decode_bytes_per_token;
  j["seconds"] = s.seconds;
  return j;
}

}  // namespace

nlohmann::json plan_to_json(const Plan& plan) {
  const auto& r = plan.request;
  const auto& m = r.model;
  nlohmann::json j;
  j["model"] = {{"name", m.name},         {"layers", m.n_layer}, {"dim", m.n_embd},
                {"heads", m.n_head},      {"kv_heads", m.n_head_kv}, {"head_dim", m.head_dim},
                {"ffn_dim", m.n_ff},      {"vocab", m.n_vocab},  {"params", m.params()}};
  j["hardware"] = profile_to_json(r.hw);
  j["tokens"] = r.tokens;
  j["gpus"] = r.gpus;
  j["gpus_per_node"] = r.gpus_per_node;
  j["dtype"] = r.dtype;
  j["dtype_reason"] = plan.dtype_reason;
  j["decode_tokens"] = r.decode_tokens;
  j["prefill_flops"] = plan.flops;
  if (plan.best >= 0) {
    const auto& b = plan.strategies[size_t(plan.best)];
    j["best"] = {{"strategy", b.strategy},
                 {"layout", b.layout},
                 {"seconds", b.seconds},
                 {"prefill_seconds", b.prefill_seconds},
                 {"decode_seconds_per_token", b.decode_seconds_per_token},
                 {"memory_bytes_per_device", b.memory_bytes},
                 {"bytes_communicated_per_device", b.bytes_communicated_per_device},
                 {"reason", plan.reason}};
  } else {
    j["best"] = nullptr;
  }
  j["reason"] = plan.reason;
  j["strategies"] = nlohmann::json::array();
  for (const auto& s : plan.strategies) j["strategies"].push_back(strategy_json(s));
  return j;
}

std::string plan_table(const Plan& plan) {
  const auto& r = plan.request;
  const int nodes = r.gpus > r.gpus_per_node ? r.gpus / r.gpus_per_node : 1;
  std::string out = fmt::format(
      "model {} ({:.3g}B params, weights {}{}), {} tokens, {} device(s) ({} node(s) x {}), "
      "hardware {}\nprefill FLOPs {:.3g}; {}; {} decode tokens\n\n",
      r.model.name, double(r.model.params()) / 1e9, r.dtype,
      plan.dtype_reason == "as asked" ? "" : " (" + plan.dtype_reason + ")", r.tokens, r.gpus,
      nodes, std::min(r.gpus, r.gpus_per_node), r.hw.name, plan.flops,
      r.hw.curves.matmul.empty() ? fmt::format("efficiency {:.2f} of peak", r.hw.efficiency)
                                 : std::string("rates from the profile's measured curves"),
      r.decode_tokens);
  // The strategy column as wide as the longest name (schemes come from the registry).
  size_t w = 8;
  for (const auto& s : plan.strategies) w = std::max(w, s.strategy.size());
  auto row = [&](const std::string& name, const std::string& layout, const std::string& fits,
                 const std::string& mem, const std::string& prefill, const std::string& decode,
                 const std::string& comm, const std::string& note) {
    out += fmt::format("{:<{}} {:<26} {:<4} {:>10} {:>10} {:>11} {:>11}  {}\n", name, w, layout,
                       fits, mem, prefill, decode, comm, note);
  };
  row("strategy", "layout", "fits", "mem/device", "prefill", "decode/tok", "comm/device", "note");
  for (const auto& s : plan.strategies) {
    if (!s.applicable) {
      row(s.strategy, s.layout, "-", "-", "-", "-", "-", s.note);
      continue;
    }
    row(s.strategy, s.layout, s.fits ? "yes" : "NO", fmt_bytes(s.memory_bytes),
        fmt_seconds(s.prefill_seconds), fmt_seconds(s.decode_seconds_per_token),
        fmt_bytes(s.bytes_communicated_per_device), s.note);
  }
  out += "\nrecommended: " + plan.reason + "\n";
  return out;
}

}  // namespace tandem::analysis
