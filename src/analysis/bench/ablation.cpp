#include "tandem/analysis/ablation.hpp"

#include <algorithm>
#include <numeric>
#include <random>

#include "tandem/analysis/bench.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/kernels/attention_plain.hpp"

namespace tandem::analysis {
namespace {

struct RunResult {
  double prefill_s = 0, decode_s = 0, activation_bytes = 0, kv_bytes = 0;
};

RunResult run_once(const Model& model, kernels::ThreadPool& pool, const AblationConfig& c,
                   const std::vector<int32_t>& prompt, int64_t n_gen) {
  Engine e(model, pool);
  e.set_options(c.engine);
  const int64_t V = model.hparams().n_vocab;
  const int64_t total = int64_t(prompt.size()) + n_gen;
  KVCache cache = e.make_cache(total);
  std::vector<float> logits(static_cast<size_t>(V));
  std::vector<int32_t> seq = prompt, pos(prompt.size());
  std::iota(pos.begin(), pos.end(), 0);
  RunResult r;
  Stopwatch sw;
  e.forward(cache, seq, pos, 1, logits.data());
  r.prefill_s = sw.seconds();
  // The arenas held, or (graphs not kept) the one of the step that just ran.
  auto held = [&] {
    return double(std::max(e.activation_bytes(), e.last_memory().arena_bytes));
  };
  r.activation_bytes = held();
  auto argmax = [&] {
    return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  };
  sw = Stopwatch();
  for (int64_t i = 0; i < n_gen; ++i) {
    const int32_t next = argmax(), p = int32_t(seq.size());
    seq.push_back(next);
    if (c.kv_cache) {
      e.forward(cache, {&next, 1}, {&p, 1}, 1, logits.data());
    } else {  // the whole sequence again, from an empty cache
      cache.truncate(0);
      pos.push_back(p);
      e.forward(cache, seq, pos, 1, logits.data());
    }
    r.activation_bytes = std::max(r.activation_bytes, held());
  }
  r.decode_s = sw.seconds();
  r.kv_bytes = double(cache.bytes());
  return r;
}

}  // namespace

std::vector<AblationConfig> ablation_configs() {
  std::vector<AblationConfig> c;
  c.push_back({"all on", {}, true});
  c.push_back({"no-kv-cache", {}, false});
  c.push_back({"reference kernels", {}, true});
  c.back().engine.reference_kernels = true;
  c.push_back({"no-flash-attn", {}, true});
  c.back().engine.flash_attention = false;
  c.push_back({"no-memory-plan", {}, true});
  c.back().engine.memory_plan = false;
  c.push_back({"no-fusion", {}, true});
  c.back().engine.fusion = false;
  c.push_back({"no-graph-reuse", {}, true});
  c.back().engine.graph_reuse = false;
  AblationConfig off{"all off", {}, false};
  off.engine.reference_kernels = true;
  off.engine.flash_attention = off.engine.memory_plan = off.engine.fusion =
      off.engine.graph_reuse = false;
  c.push_back(off);
  return c;
}

std::vector<AblationRow> run_ablation(const Model& model, kernels::ThreadPool& pool,
                                      const AblationOptions& o) {
  if (o.n_prompt < 1) bad_input("-p: the ablation needs a prompt of at least 1 token");
  if (o.n_gen < 0) bad_input("-n: must be >= 0");
  if (o.repeats < 1) bad_input("-r: must be >= 1");
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(model.hparams().n_vocab - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
  for (auto& id : prompt) id = dist(rng);

  std::vector<AblationRow> rows;
  for (auto c : ablation_configs()) {
    c.engine.kv = o.kv;
    rows.emplace_back();
    rows.back().config = c;
  }
  const int runs = o.repeats * int(rows.size()) + 1;
  int done = 0;
  // Warm-up (untimed): page in the weights, start the threads, grow the buffers.
  if (o.progress) o.progress(done++, runs, "warm-up");
  run_once(model, pool, rows.front().config, prompt, std::min<int64_t>(o.n_gen, 2));
  for (int rep = 0; rep < o.repeats; ++rep) {
    for (auto& row : rows) {
      if (o.progress) o.progress(done++, runs, row.config.name);
      kernels::reset_attention_scratch_peak();
      const RunResult r = run_once(model, pool, row.config, prompt, o.n_gen);
      row.prefill_s.push_back(r.prefill_s);
      row.decode_s.push_back(r.decode_s);
      row.activation_bytes = std::max(row.activation_bytes, r.activation_bytes);
      row.peak_bytes = std::max(row.peak_bytes, double(model.weight_bytes()) + r.kv_bytes +
                                                    r.activation_bytes +
                                                    double(kernels::attention_scratch_peak()));
    }
  }
  for (auto& row : rows) {
    const double p = median(row.prefill_s), d = median(row.decode_s);
    row.ttft_s = p;
    row.prefill_tokens_per_s = double(o.n_prompt) / p;
    row.decode_tokens_per_s = o.n_gen > 0 ? double(o.n_gen) / d : 0;
  }
  const AblationRow& off = rows.back();
  for (auto& row : rows) {
    row.prefill_speedup = row.prefill_tokens_per_s / off.prefill_tokens_per_s;
    row.decode_speedup =
        off.decode_tokens_per_s > 0 ? row.decode_tokens_per_s / off.decode_tokens_per_s : 0;
  }
  return rows;
}

}  // namespace tandem::analysis
