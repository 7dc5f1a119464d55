// Throughput benchmarks (pp / tg at a depth) and their place on the roofline.
#include "tandem/analysis/bench.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::analysis {
namespace {

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = dist(rng);
  return ids;
}

std::vector<int32_t> positions(int64_t from, int64_t n) {
  std::vector<int32_t> pos(static_cast<size_t>(n));
  std::iota(pos.begin(), pos.end(), int32_t(from));
  return pos;
}

// One run of the test on a cache holding exactly `depth` tokens; returns seconds.
double run_once(Engine& engine, KVCache& cache, const BenchTest& t,
                const std::vector<int32_t>& ids, const std::vector<int32_t>& pos,
                std::vector<float>& logits) {
  cache.truncate(t.depth);
  const Stopwatch sw;
  if (t.kind == BenchTest::Kind::Prefill) {
    engine.forward(cache, ids, pos, 1, logits.data());
  } else {
    for (size_t i = 0; i < ids.size(); ++i)
      engine.forward(cache, std::span(&ids[i], 1), std::span(&pos[i], 1), 1, logits.data());
  }
  return sw.seconds();
}

}  // namespace

std::string BenchTest::name() const {
  std::string s = (kind == Kind::Prefill ? "pp" : "tg") + std::to_string(n);
  if (depth > 0) s += "@d" + std::to_string(depth);
  return s;
}

double median(std::vector<double> v) {
  TD_CHECK(!v.empty());
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void summarize(BenchResult& r) {
  auto v = r.tokens_per_s;
  TD_CHECK(!v.empty());
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  r.median = median(v);
  r.min = v.front();
  r.max = v.back();
  r.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(n);
  double ss = 0;
  for (double x : v) ss += (x - r.mean) * (x - r.mean);
  r.stddev = n > 1 ? std::sqrt(ss / double(n - 1)) : 0.0;
}

BenchResult run_bench(Engine& engine, const BenchTest& test, int repeats, uint64_t seed) {
  if (test.n < 1) bad_input("bench: {} needs at least one token", test.name());
  if (test.depth < 0) bad_input("bench: depth must be >= 0, got {}", test.depth);
  if (repeats < 1) bad_input("bench: repeats must be >= 1, got {}", repeats);
  const int64_t vocab = engine.model().hparams().n_vocab;
  KVCache cache = engine.make_cache(test.depth + test.n);
  std::vector<float> logits(static_cast<size_t>(vocab));
  if (test.depth > 0) {  // untimed pre-fill, kept for every run
    const auto ids = random_ids(test.depth, vocab, seed ^ 0x5eedull);
    const auto pos = positions(0, test.depth);
    engine.forward(cache, ids, pos, 1, logits.data());
  }
  const auto ids = random_ids(test.n, vocab, seed);
  const auto pos = positions(test.depth, test.n);
  BenchResult r;
  r.test = test;
  r.kv_bytes = double(cache.bytes());
  run_once(engine, cache, test, ids, pos, logits);  // warm-up
  for (int i = 0; i < repeats; ++i) {
    const double s = run_once(engine, cache, test, ids, pos, logits);
    r.tokens_per_s.push_back(s > 0 ? double(test.n) / s : 0.0);
  }
  summarize(r);
  return r;
}

double decode_bytes_per_token(const Model& m, double ctx, DType kv_type) {
  const auto& h = m.hparams();
  return double(m.weight_bytes()) +
         2.0 * double(h.n_layer) * ctx * double(row_bytes(kv_type, h.kv_dim()));
}

double prefill_flops(const Model& m, int64_t n, int64_t depth) {
  const auto& h = m.hparams();
  const double D = double(h.n_embd), F = double(h.n_ff);
  const double layer_params = 2.0 * D * double(h.q_dim()) + 2.0 * D * double(h.kv_dim()) +
                              3.0 * D * F;
  const double N = double(n), L = double(h.n_layer);
  const double matmul = 2.0 * N * L * layer_params + 2.0 * double(h.n_vocab) * D;
  // Keys visible to token i: depth + i + 1; summed over i < n.
  const double keys = N * double(depth) + N * (N + 1) / 2;
  const double attn = L * 4.0 * double(h.q_dim()) * keys;
  return matmul + attn;
}

RooflinePoint roofline_point(const Model& m, const BenchTest& test, double tokens_per_s,
                             const Roofline& roof, DType kv_type) {
  RooflinePoint p;
  if (test.kind == BenchTest::Kind::Generate) {
    // Token i of the run attends to depth + i + 1 keys: mean context depth + (n+1)/2.
    const double ctx = double(test.depth) + double(test.n + 1) / 2;
    p.bandwidth_bound = true;
    p.cost_per_token = decode_bytes_per_token(m, ctx, kv_type);
    p.bound_tokens_per_s = roof.read_bandwidth / p.cost_per_token;
  } else {
    p.cost_per_token = prefill_flops(m, test.n, test.depth) / double(test.n);
    p.bound_tokens_per_s = roof.fma_peak / p.cost_per_token;
  }
  p.achieved = tokens_per_s * p.cost_per_token;
  p.fraction = p.bound_tokens_per_s > 0 ? tokens_per_s / p.bound_tokens_per_s : 0.0;
  return p;
}

}  // namespace tandem::analysis
