#include "tandem/runtime/results.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "tandem/core/error.hpp"
#include "tandem/core/process_memory.hpp"

namespace tandem {

double RankReport::hidden_fraction() const {
  return comm_transfer_seconds > 0
             ? std::clamp(1.0 - comm_wait_seconds / comm_transfer_seconds, 0.0, 1.0)
             : 0.0;
}

double RankReport::accounted_bytes() const {
  // Every rank of a process maps the same file; its other figures add up per rank.
  return weights_bytes + logits_bytes +
         process_ranks * (kv_bytes + activation_bytes + workspace_bytes);
}

double RankReport::unaccounted_bytes() const {
  return peak_rss_bytes > 0 ? peak_rss_bytes - baseline_rss_bytes - accounted_bytes() : 0;
}

void RankReport::measure_process() {
  const ProcessMemory mem = process_memory();
  if (!mem.known) return;
  peak_rss_bytes = double(mem.peak_rss);
  baseline_rss_bytes = double(baseline_rss());
  baseline_file_rss_bytes = double(baseline_file_rss());
  file_rss_bytes = double(mem.rss_file);
}

std::string RankReport::describe_memory() const {
  if (peak_rss_bytes <= 0) return {};
  constexpr double MiB = 1 << 20;
  return fmt::format(
      "peak RSS {:.1f} MiB = baseline {:.1f} (program and libraries mapped {:.1f}, heap, stacks "
      "and MPI runtime {:.1f}) + weights {:.1f} + KV {:.1f} + activations {:.1f} + workspace "
      "{:.1f}{} + unaccounted {:.1f} MiB (mapped-file pages resident at the end: {:.1f} MiB)",
      peak_rss_bytes / MiB, baseline_rss_bytes / MiB, baseline_file_rss_bytes / MiB,
      (baseline_rss_bytes - baseline_file_rss_bytes) / MiB, weights_bytes / MiB,
      process_ranks * kv_bytes / MiB, process_ranks * activation_bytes / MiB,
      process_ranks * workspace_bytes / MiB,
      logits_bytes > 0 ? fmt::format(" + logits {:.1f}", logits_bytes / MiB) : std::string(),
      unaccounted_bytes() / MiB, file_rss_bytes / MiB);
}

namespace {
// RankReport's measured fields and their JSON names (bytes written as whole numbers).
// An optional field may be missing from a document (written before it existed): it
// reads as 0.
struct RankField {
  const char* name;
  double RankReport::*member;
  bool bytes;
  bool optional = false;
};
constexpr RankField kRankFields[] = {
    {"seconds", &RankReport::seconds, false},
    {"weights_bytes", &RankReport::weights_bytes, true},
    {"kv_bytes", &RankReport::kv_bytes, true},
    {"activation_bytes", &RankReport::activation_bytes, true},
    {"activation_unplanned_bytes", &RankReport::activation_unplanned_bytes, true},
    {"bytes_sent", &RankReport::bytes_sent, true},
    {"bytes_received", &RankReport::bytes_received, true},
    {"comm_wait_seconds", &RankReport::comm_wait_seconds, false},
    {"comm_transfer_seconds", &RankReport::comm_transfer_seconds, false, true},
    {"head_pairs", &RankReport::head_pairs, false},
    {"workspace_bytes", &RankReport::workspace_bytes, true},
    {"logits_bytes", &RankReport::logits_bytes, true},
    {"peak_rss_bytes", &RankReport::peak_rss_bytes, true},
    {"baseline_rss_bytes", &RankReport::baseline_rss_bytes, true},
    {"baseline_file_rss_bytes", &RankReport::baseline_file_rss_bytes, true},
    {"file_rss_bytes", &RankReport::file_rss_bytes, true},
    {"process_ranks", &RankReport::process_ranks, false},
};
}  // namespace

nlohmann::json to_json(const RankReport& x) {
  nlohmann::json j = {{"rank", x.rank}, {"tokens", x.tokens}};
  for (const RankField& f : kRankFields)
    j[f.name] = f.bytes ? nlohmann::json(uint64_t(x.*f.member)) : nlohmann::json(x.*f.member);
  j["comm_hidden_fraction"] = x.hidden_fraction();
  j["unaccounted_bytes"] = x.unaccounted_bytes();
  return j;
}

nlohmann::json to_json(const PrefillReport& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["tokens"] = r.tokens;
  j["scheme"] = r.scheme;
  j["ranks"] = r.ranks;
  j["threads_per_rank"] = r.threads_per_rank;
  j["seconds"] = r.seconds;
  j["tokens_per_s"] = r.tokens_per_s;
  if (!r.seconds_each.empty()) {
    j["warmup"] = r.warmup;
    j["seconds_each"] = r.seconds_each;
    j["first_seconds"] = r.first_seconds;
  }
  j["per_rank"] = nlohmann::json::array();
  for (const auto& x : r.per_rank) j["per_rank"].push_back(to_json(x));
  return j;
}

nlohmann::json to_json(const GenerateReport& r) {
  const GenerateStats& s = r.stats;
  return {{"model", r.model},
          {"scheme", r.scheme},
          {"ranks", r.ranks},
          {"threads_per_rank", r.threads_per_rank},
          {"seed", r.seed},
          {"prompt_tokens", s.n_prompt},
          {"generated_tokens", s.n_generated},
          {"decode_steps", s.n_decode_steps},
          {"prompt_seconds", s.prompt_seconds},
          {"decode_seconds", s.decode_seconds},
          {"ttft_seconds", s.ttft_seconds},
          {"decode_step_seconds", s.step_seconds},
          {"prompt_tokens_per_s", s.prompt_tokens_per_s()},
          {"generation_tokens_per_s", s.gen_tokens_per_s()},
          {"estimate_bytes", uint64_t(r.estimate_bytes)},
          {"peak_rss_bytes", uint64_t(r.peak_rss_bytes)},
          {"baseline_rss_bytes", uint64_t(r.baseline_rss_bytes)},
          {"memory", to_json(r.memory)},
          {"tokens", r.tokens}};
}

namespace {
// Runs `read` and turns a JSON error into Error(BadInput) naming the document.
template <class F>
auto parsing(const std::string& what, F read) {
  try {
    return read();
  } catch (const nlohmann::json::exception& e) {
    bad_input("{}: not a tandem result: {}", what, e.what());
  }
}
}  // namespace

RankReport rank_report_from_json(const nlohmann::json& j, const std::string& what) {
  return parsing(what, [&] {
    RankReport x;
    x.rank = j.at("rank").get<int>();
    x.tokens = j.at("tokens").get<int64_t>();
    for (const RankField& f : kRankFields)
      if (!f.optional || j.contains(f.name)) x.*f.member = j.at(f.name).get<double>();
    return x;
  });
}

PrefillReport prefill_report_from_json(const nlohmann::json& j, const std::string& what) {
  return parsing(what, [&] {
    PrefillReport r;
    r.model = j.at("model").get<std::string>();
    r.scheme = j.at("scheme").get<std::string>();
    r.ranks = j.at("ranks").get<int>();
    r.threads_per_rank = j.at("threads_per_rank").get<int>();
    r.tokens = j.at("tokens").get<int64_t>();
    r.seconds = j.at("seconds").get<double>();
    r.tokens_per_s = j.at("tokens_per_s").get<double>();
    if (j.contains("seconds_each")) {
      r.warmup = j.at("warmup").get<int>();
      r.seconds_each = j.at("seconds_each").get<std::vector<double>>();
      r.first_seconds = j.at("first_seconds").get<double>();
    }
    for (const auto& x : j.at("per_rank")) r.per_rank.push_back(rank_report_from_json(x, what));
    return r;
  });
}

GenerateReport generate_report_from_json(const nlohmann::json& j, const std::string& what) {
  return parsing(what, [&] {
    GenerateReport r;
    r.model = j.at("model").get<std::string>();
    r.scheme = j.at("scheme").get<std::string>();
    r.ranks = j.at("ranks").get<int>();
    r.threads_per_rank = j.at("threads_per_rank").get<int>();
    r.seed = j.at("seed").get<uint64_t>();
    GenerateStats& s = r.stats;
    s.n_prompt = j.at("prompt_tokens").get<int64_t>();
    s.n_generated = j.at("generated_tokens").get<int64_t>();
    s.n_decode_steps = j.at("decode_steps").get<int64_t>();
    s.prompt_seconds = j.at("prompt_seconds").get<double>();
    s.decode_seconds = j.at("decode_seconds").get<double>();
    s.ttft_seconds = j.at("ttft_seconds").get<double>();
    if (j.contains("decode_step_seconds"))
      s.step_seconds = j.at("decode_step_seconds").get<std::vector<double>>();
    r.tokens = j.at("tokens").get<std::vector<int32_t>>();
    r.estimate_bytes = j.at("estimate_bytes").get<double>();
    r.peak_rss_bytes = j.at("peak_rss_bytes").get<double>();
    r.baseline_rss_bytes = j.at("baseline_rss_bytes").get<double>();
    if (j.contains("memory")) r.memory = rank_report_from_json(j.at("memory"), what + ": memory");
    return r;
  });
}

}  // namespace tandem
