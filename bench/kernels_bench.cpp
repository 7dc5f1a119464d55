// Kernel micro-benchmarks: matmul per weight type (decode m = 1, prefill m = 512) and
// attention (causal prefill of 512/2048/8192 tokens, decode at depth 8192), on the
// shapes of make-model's presets. Threads: TANDEM_BENCH_THREADS (default 2).
// Counters: tok/s (tokens of x or queries per second) and FLOP/s (2 per multiply-add;
// attention counts the visible (query, key) pairs only: 4*d per pair and head).
// Example: kernels_bench --benchmark_filter=Matmul --benchmark_repetitions=5
//          --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <utility>
#include <random>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/kernels/attention_plain.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/quant.hpp"

namespace tk = tandem::kernels;
using tandem::DType;

namespace {

int bench_threads() {
  const char* e = std::getenv("TANDEM_BENCH_THREADS");
  return e ? std::max(1, std::atoi(e)) : 2;
}

tk::ThreadPool& pool() {
  static tk::ThreadPool p(bench_threads());
  return p;
}

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

const DType kTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0};

// Args: type index, rows, cols, m, int8 activations (Q8_0/Q4_0 only), weights repacked
// as at model load (kernels::pack_weight; Q8_0/Q4_0 with int8 activations, where the
// kernels in use have a packed layout), F32 lanes tiles (detail::lane_tiles; 0: the
// register tiles, for comparison).
void BM_Matmul(benchmark::State& st) {
  const DType t = kTypes[st.range(0)];
  const int64_t rows = st.range(1), cols = st.range(2), m = st.range(3);
  const bool saved = tk::detail::int8_activations();
  tk::detail::set_int8_activations(st.range(4) != 0);
  tk::detail::set_lane_tiles(st.range(6) != 0);
  const size_t rs = tandem::row_bytes(t, cols);
  std::vector<uint8_t> bytes(rs * size_t(rows));
  const std::vector<float> wf = random_vec(size_t(rows * cols), 1);
  for (int64_t r = 0; r < rows; ++r)
    tk::quantize_row(t, wf.data() + r * cols, bytes.data() + size_t(r) * rs, cols);
  tk::Weight w{t, rows, cols, bytes.data(), rs};
  std::vector<uint8_t> packed;
  if (st.range(5) != 0) {
    const size_t n = tk::packed_size(w);
    if (n == 0) {
      st.SkipWithError("no packed layout for this type in the kernels in use");
      tk::detail::set_int8_activations(saved);
      return;
    }
    packed.resize(n + 64);
    uint8_t* p = packed.data() + (64 - reinterpret_cast<uintptr_t>(packed.data()) % 64) % 64;
    w.packed_layout = tk::pack_weight(w, p);
    w.packed = p;
  }
  const std::vector<float> x = random_vec(size_t(m * cols), 2);
  std::vector<float> y(size_t(m * rows));
  for (auto _ : st) {
    tk::matmul(w, x.data(), m, y.data(), pool());
    benchmark::DoNotOptimize(y.data());
  }
  tk::detail::set_int8_activations(saved);
  tk::detail::set_lane_tiles(true);
  st.SetLabel(std::string(tandem::dtype_name(t)) + (st.range(4) ? " int8-x" : "") +
              (st.range(5) ? " packed" : ""));
  constexpr auto kRate = benchmark::Counter::kIsIterationInvariantRate;
  st.counters["tok/s"] = benchmark::Counter(double(m), kRate);
  st.counters["FLOP/s"] = benchmark::Counter(2.0 * double(rows * cols * m),
                                             kRate);
  st.counters["weight GB/s"] = benchmark::Counter(double(rs * size_t(rows)) / 1e9,
                                                  kRate);
}

void matmul_args(benchmark::internal::Benchmark* b) {
  // small preset: D = 768, F = 2048 (ffn_up shape [F][D]).
  for (int ti = 0; ti < 5; ++ti)
    for (int m : {1, 512}) {
      b->Args({ti, 2048, 768, m, 0, 0, 1});
      if (ti >= 3)
        for (int packed : {0, 1}) b->Args({ti, 2048, 768, m, 1, packed, 1});
    }
  // Decode of plain types on the small preset's largest shapes: the output matrix
  // [V = 32000][D] and ffn_down [D][F].
  for (int ti = 0; ti < 3; ++ti) {
    b->Args({ti, 32000, 768, 1, 0, 0, 1});
    b->Args({ti, 768, 2048, 1, 0, 0, 1});
  }
  // Continuous-batching decode steps (m = 16 rows, one per sequence) and m = 1 beside
  // them: F32 (lanes tiles on and off), and Q8_0 with int8 activations and packed
  // weights, on ffn_up [F][D], ffn_down [D][F] and the output matrix [V][D]; F32
  // prefill with the lanes tiles on and off.
  for (const auto& [rows, cols] : {std::pair{2048, 768}, {768, 2048}, {32000, 768}})
    for (int m : {1, 16}) {
      for (int lanes : {0, 1}) b->Args({0, rows, cols, m, 0, 0, lanes});
      b->Args({3, rows, cols, m, 1, 1, 1});
    }
  b->Args({0, 2048, 768, 512, 0, 0, 0});
  // ffn_down shape [D][F] with 8-bit activations (long rows: the integer tile's
  // repacked rows no longer fit L1).
  for (int ti = 3; ti < 5; ++ti)
    for (int m : {1, 512})
      for (int packed : {0, 1}) b->Args({ti, 768, 2048, m, 1, packed, 1});
}
BENCHMARK(BM_Matmul)->Apply(matmul_args)
    ->ArgNames({"type", "rows", "cols", "m", "int8", "packed", "lanes"})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// Args: n_q, n_kv, H, G, d, flash tiles on. Causal, queries are the last n_q positions.
void BM_Attention(benchmark::State& st) {
  const int64_t n_q = st.range(0), n_kv = st.range(1);
  const int H = int(st.range(2)), G = int(st.range(3)), d = int(st.range(4));
  const bool saved = tk::detail::flash_attention();
  // flash: 1 flash tiles, 0 one online-softmax unit per query, 2 materialized scores
  // (attention_materialized, the --no-flash-attn kernel)
  const bool materialized = st.range(5) == 2;
  tk::detail::set_flash_attention(st.range(5) != 0);
  const std::vector<float> q = random_vec(size_t(n_q * H * d), 3, -2.0f, 2.0f);
  const std::vector<float> k = random_vec(size_t(n_kv * G * d), 4, -2.0f, 2.0f);
  const std::vector<float> v = random_vec(size_t(n_kv * G * d), 5);
  std::vector<int32_t> q_pos(static_cast<size_t>(n_q)), kv_pos(static_cast<size_t>(n_kv));
  for (int64_t j = 0; j < n_kv; ++j) kv_pos[size_t(j)] = int32_t(j);
  for (int64_t i = 0; i < n_q; ++i) q_pos[size_t(i)] = int32_t(n_kv - n_q + i);
  std::vector<float> out(size_t(n_q * H * d)), lse(size_t(n_q * H));
  tk::AttentionArgs a;
  a.q = q.data();
  a.q_pos = q_pos.data();
  a.n_q = n_q;
  a.k = k.data();
  a.v = v.data();
  a.kv_pos = kv_pos.data();
  a.n_kv = n_kv;
  a.kv_stride = int64_t(G) * d;
  a.H = H;
  a.G = G;
  a.d = d;
  a.scale = 1.0f / std::sqrt(float(d));
  a.causal = true;
  a.out = out.data();
  a.lse = lse.data();
  for (auto _ : st) {
    if (materialized)
      tk::attention_materialized(a, pool());
    else
      tk::attention(a, pool());
    benchmark::DoNotOptimize(out.data());
  }
  tk::detail::set_flash_attention(saved);
  double pairs = 0;  // visible (query, key) pairs
  for (int64_t i = 0; i < n_q; ++i) pairs += double(q_pos[size_t(i)] + 1);
  constexpr auto kRate = benchmark::Counter::kIsIterationInvariantRate;
  st.counters["tok/s"] = benchmark::Counter(double(n_q), kRate);
  st.counters["FLOP/s"] = benchmark::Counter(4.0 * d * H * pairs,
                                             kRate);
  st.counters["KV GB/s"] = benchmark::Counter(n_q == 1 ? 2.0 * 4 * n_kv * G * d / 1e9 : 0.0,
                                              kRate);
}
// tiny preset: H = G = 6, d = 48; small preset: H = 12, G = 4, d = 64.
void attention_args(benchmark::internal::Benchmark* b) {
  // tiny preset: H = G = 6, d = 48; small preset: H = 12, G = 4, d = 64.
  for (int flash : {0, 1, 2}) {
    for (int n : {512, 2048, 8192}) b->Args({n, n, 6, 6, 48, flash});
    b->Args({512, 512, 12, 4, 64, flash});
  }
  // 512 queries over 16384 keys: K and V (38 MB) past the last-level cache; a tile's
  // sub-tiles share each block of them.
  b->Args({512, 16384, 6, 6, 48, 1});
  b->Args({1, 8192, 6, 6, 48, 1});  // decode: split-KV units (flash tiles not used)
  b->Args({1, 8192, 12, 4, 64, 1});
  b->Args({1, 200, 12, 4, 64, 1});  // a decode row of a continuous-batching step
}
BENCHMARK(BM_Attention)
    ->Apply(attention_args)
    ->ArgNames({"n_q", "n_kv", "H", "G", "d", "flash"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
