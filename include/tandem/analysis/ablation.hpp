#pragma once
// What each sequential optimization buys: the same prefill + decode workload under every
// configuration (all on, each one off, all off), repeats interleaved across the
// configurations so a noisy machine affects them alike; medians reported.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tandem/model/model.hpp"
#include "tandem/runtime/engine.hpp"

namespace tandem::analysis {

struct AblationConfig {
  std::string name;  // "all on", "no-kv-cache", "reference kernels", ..., "all off"
  EngineOptions engine;
  bool kv_cache = true;  // false: every decode step recomputes the whole sequence
};

// All on; each technique off alone (--no-kv-cache, --kernels reference, --no-flash-attn,
// --no-memory-plan, --no-fusion, --no-graph-reuse); all off.
std::vector<AblationConfig> ablation_configs();

struct AblationRow {
  AblationConfig config;
  std::vector<double> prefill_s, decode_s;  // per repeat
  double prefill_tokens_per_s = 0;  // median
  double decode_tokens_per_s = 0;   // median
  double ttft_s = 0;                // median: prefill of the prompt with the first logits
  // Accounted peak: weights + KV cache + activation buffers + attention scores.
  double peak_bytes = 0;
  double activation_bytes = 0;      // activation buffers (arenas) at their largest
  double prefill_speedup = 0;       // over all off (medians)
  double decode_speedup = 0;
};

struct AblationOptions {
  int64_t n_prompt = 128;
  int64_t n_gen = 16;
  int repeats = 3;
  uint64_t seed = 1234;
  KVCacheOptions kv;  // the KV cache of every configuration
  // Called before each run: (run index, runs in all, configuration name).
  std::function<void(int, int, const std::string&)> progress;
};

std::vector<AblationRow> run_ablation(const Model& model, kernels::ThreadPool& pool,
                                      const AblationOptions& o);

}  // namespace tandem::analysis
