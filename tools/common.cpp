#include "common.hpp"

#include <sstream>
#include <cstdlib>
#include <cctype>
#include <fstream>

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <cstring>
#include <random>
#include <thread>

#include "commands.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/text_file.hpp"

namespace tandem::cli {

namespace {

// The value of `text` when it is a whole number from lo to hi written the one way
// std::to_string writes it: decimal digits after an optional '-', no '+', no leading
// zeros, no "-0". CLI11 converts a flag's text itself after the check, with strtoll in
// base 0 (where "010" is 8 and "0x10" is 16): only a text that both read alike passes.
bool leading_zero(std::string_view text) {
  return text.size() > 1 && (text[0] == '0' || (text[0] == '-' && text[1] == '0'));
}

std::optional<int64_t> int_value(std::string_view text, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end || v < lo || v > hi || leading_zero(text))
    return std::nullopt;
  return v;
}

std::string not_int_in(std::string_view text, int64_t lo, int64_t hi) {
  return fmt::format("'{}' is not a whole number from {} to {}{}", text, lo, hi,
                     leading_zero(text) ? " (decimal, without leading zeros)" : "");
}

}  // namespace

int64_t parse_int_in(std::string_view text, std::string_view flag, int64_t lo, int64_t hi) {
  const auto v = int_value(text, lo, hi);
  if (!v) bad_input("{}: {}", flag, not_int_in(text, lo, hi));
  return *v;
}

std::vector<int64_t> parse_int_list(std::string_view text, std::string_view flag, int64_t lo,
                                    int64_t hi, size_t max_items) {
  std::vector<int64_t> v;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    if (v.size() == max_items)
      bad_input("{}: more than {} items in '{}'", flag, max_items, text);
    const std::string_view item = text.substr(at, comma - at);
    const auto x = int_value(item, lo, hi);
    if (!x)
      bad_input("{}: {} (give a comma list, e.g. 256,1024)", flag, not_int_in(item, lo, hi));
    v.push_back(*x);
    at = comma + 1;
  }
  return v;
}

CLI::Validator int_in(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) {
        return int_value(text, lo, hi) ? std::string() : not_int_in(text, lo, hi);
      },
      fmt::format("INT in [{} - {}]", lo, hi));
}

int default_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      std::string name = line.substr(line.find(':') + 1);
      while (!name.empty() && name.front() == ' ') name.erase(name.begin());
      while (!name.empty() && name.back() == ' ') name.pop_back();
      if (!name.empty()) return name;
    }
  return "unknown CPU";
}

std::string machine_profile_path(int threads) {
  std::string dir;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    dir = std::string(x) + "/tandem/profiles";
  else if (const char* h = std::getenv("HOME"); h && *h)
    dir = std::string(h) + "/.cache/tandem/profiles";
  else
    dir = ".tandem-profiles";
  std::string name;
  for (const char c : cpu_model()) name += std::isalnum(static_cast<unsigned char>(c)) ? char(std::tolower(c)) : '-';
  std::string squeezed;
  for (const char c : name)
    if (c != '-' || (!squeezed.empty() && squeezed.back() != '-')) squeezed += c;
  while (!squeezed.empty() && squeezed.back() == '-') squeezed.pop_back();
  return fmt::format("{}/{}-{}t.json", dir, squeezed.empty() ? "cpu" : squeezed, threads);
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) v.push_back(item);
  return v;
}

CLI::Option* add_threads_option(CLI::App* sub, int& threads) {
  threads = default_threads();
  return sub->add_option("-t,--threads", threads, "Worker threads (default: cores available)")
      ->check(int_in(1, 1024));
}

void add_engine_options(CLI::App* sub, EngineFlags& f) {
  sub->add_option("--kernels", f.kernels,
                  "optimized (default) or reference: plain scalar kernels, the naive baseline")
      ->check(CLI::IsMember({"optimized", "reference"}));
  sub->add_flag("--no-flash-attn", f.no_flash_attn,
                "Attention with the score matrix materialized instead of flash-attention tiles");
  sub->add_flag("--no-memory-plan", f.no_memory_plan,
                "One buffer per activation instead of the planned arena");
  sub->add_flag("--no-fusion", f.no_fusion,
                "No graph passes: no fused matmuls (QKV, gate/up+SwiGLU, RMSNorm, RoPE), no "
                "dead-node elimination");
  sub->add_flag("--no-graph-reuse", f.no_graph_reuse,
                "Build the execution graph (passes, plan) again every step");
  sub->add_option("--kv-page", f.kv_page,
                  "KV cache page size in tokens (paged cache with block tables); 0: one "
                  "contiguous buffer (default: 256 on one rank; contiguous under --sp)")
      ->check(int_in(0, int64_t{1} << 20));
  sub->add_option("--kv-type", f.kv_type, "KV cache rows: f32 (default) or q8_0")
      ->check(CLI::IsMember({"f32", "q8_0"}));
}

EngineOptions EngineFlags::options(bool local) const {
  EngineOptions o;
  o.kv.page_tokens = kv_page >= 0 ? kv_page : local ? kDefaultKvPage : 0;
  o.kv.type = kv_type == "q8_0" ? DType::Q8_0 : DType::F32;
  o.reference_kernels = reference();
  o.flash_attention = !no_flash_attn;
  o.memory_plan = !no_memory_plan;
  o.fusion = !no_fusion;
  o.graph_reuse = !no_graph_reuse;
  return o;
}

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    if (*p == ',' || *p == ' ') {
      ++p;
      continue;
    }
    int32_t v = 0;
    auto [q, ec] = std::from_chars(p, end, v);
    if (ec != std::errc() || v < 0 || (q < end && *q != ',' && *q != ' '))
      bad_input("{}: '{}' is not a list of non-negative token ids (e.g. 1,2,3)", flag, text);
    ids.push_back(v);
    p = q;
  }
  if (ids.empty()) bad_input("{}: no token ids given", flag);
  return ids;
}

std::vector<int32_t> random_token_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = dist(rng);
  return ids;
}

std::string read_text_flag(const std::string& path, const std::string& flag) {
  return read_file_bounded(path, flag, kMaxTextBytes);
}

}  // namespace tandem::cli
