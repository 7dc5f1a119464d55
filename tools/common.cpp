#include "common.hpp"

#include <sched.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "commands.hpp"
#include "tandem/core/error.hpp"

namespace tandem::cli {

int default_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

CLI::Option* add_threads_option(CLI::App* sub, int& threads) {
  threads = default_threads();
  return sub->add_option("-t,--threads", threads, "Worker threads (default: cores available)")
      ->check(CLI::Range(1, 1024));
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
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
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

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad_input("{}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace tandem::cli
