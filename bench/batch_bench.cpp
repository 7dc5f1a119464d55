// Continuous-batching step benchmark: Engine::forward_batch with S sequences each
// decoding one token at a context depth, as tandem serve's decode steps do (paged KV
// pool of 16-token pages, logits for every row), on make-model's small preset
// (D = 768, L = 12, H = 12, G = 4, F = 2048, V = 32000). The models are written once
// to TANDEM_BENCH_MODELS (default /tmp/tandem-bench-models). Threads:
// TANDEM_BENCH_THREADS (default 2).
// Counters: ms per step, output tok/s, and per phase (the engine's trace spans:
// qkv, attention, out+ffn, logits) the mean ms per step.
// Example: batch_bench --benchmark_filter='BatchDecode/type:0' --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/model/synth.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/weight_layout.hpp"

using namespace tandem;

namespace {

int bench_threads() {
  const char* e = std::getenv("TANDEM_BENCH_THREADS");
  return e ? std::max(1, std::atoi(e)) : 2;
}

kernels::ThreadPool& pool() {
  static kernels::ThreadPool p(bench_threads());
  return p;
}

const DType kTypes[] = {DType::F32, DType::Q8_0};

// The small-preset model of type t, written on first use and loaded once.
const Model& small_model(DType t) {
  static std::map<DType, std::unique_ptr<Model>> models;
  auto& m = models[t];
  if (m) return *m;
  const char* dir = std::getenv("TANDEM_BENCH_MODELS");
  const std::filesystem::path folder = dir ? dir : "/tmp/tandem-bench-models";
  std::filesystem::create_directories(folder);
  const auto path = folder / ("small-" + std::string(dtype_name(t)) + "-v32000.gguf");
  if (!std::filesystem::exists(path)) {
    SynthSpec s = synth_preset("small");
    s.type = t;
    s.n_vocab = 32000;
    write_synthetic_model(s, path.string() + ".tmp");
    std::filesystem::rename(path.string() + ".tmp", path);
  }
  m = load_model(path.string());
  return *m;
}

// Args: type index, sequences S, context depth, F32 lanes tiles (0: the register tiles,
// for comparison). Each step: S items of one token at position depth (the caches are
// cut back to depth after every step).
void BM_BatchDecode(benchmark::State& st) {
  const Model& model = small_model(kTypes[st.range(0)]);
  const int64_t S = st.range(1), depth = st.range(2);
  kernels::detail::set_lane_tiles(st.range(3) != 0);
  const int64_t V = model.hparams().n_vocab;
  Engine e(model, pool());
  KVCacheOptions kv{16, DType::F32, 0};
  auto kv_pool = e.make_pool(S * (depth + 16), kv);
  std::vector<KVCache> caches;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(V) - 1);
  // Prefill each sequence's context (depth tokens) alone.
  for (int64_t s = 0; s < S; ++s) {
    caches.emplace_back(kv_pool, depth + 16);
    std::vector<int32_t> ids(static_cast<size_t>(depth)), pos(static_cast<size_t>(depth));
    for (auto& id : ids) id = tok(rng);
    std::iota(pos.begin(), pos.end(), 0);
    e.forward(caches.back(), ids, pos, 0, nullptr);
  }
  std::vector<int32_t> ids(static_cast<size_t>(S)), pos(static_cast<size_t>(S), int32_t(depth));
  std::vector<float> logits(size_t(S * V));
  std::vector<BatchItem> items;
  for (int64_t s = 0; s < S; ++s)
    items.push_back({&caches[size_t(s)], std::span(ids).subspan(size_t(s), 1),
                     std::span(pos).subspan(size_t(s), 1), logits.data() + s * V});
  auto one_step = [&] {
    for (auto& id : ids) id = tok(rng);
    e.forward_batch(items);
    for (auto& c : caches) c.truncate(depth);
  };
  one_step();  // graphs built, buffers grown
  Trace trace;
  e.set_trace(&trace);
  for (auto _ : st) {
    one_step();
    benchmark::DoNotOptimize(logits.data());
  }
  e.set_trace(nullptr);
  kernels::detail::set_lane_tiles(true);
  std::map<std::string, double> phase;
  for (const Trace::Span& s : trace.spans()) phase[s.name] += s.end - s.begin;
  const double steps = double(st.iterations());
  for (const auto& [name, sec] : phase) st.counters[name + " ms"] = 1e3 * sec / steps;
  st.counters["tok/s"] =
      benchmark::Counter(double(S), benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(std::string(dtype_name(kTypes[st.range(0)])));
}
BENCHMARK(BM_BatchDecode)
    ->ArgsProduct({{0, 1}, {1, 16}, {200}, {0, 1}})
    ->ArgNames({"type", "seqs", "depth", "lanes"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
