#pragma once
// Throughput benchmarks in the manner of llama-bench: "pp N" prefills N tokens, "tg N"
// generates N tokens one at a time, both optionally on top of a cache pre-filled to a
// depth; a warm-up run, then R timed repeats. Each result can be set against this
// machine's roofline (analysis/roofline.hpp): decode against the memory-bandwidth bound,
// prefill against the FMA peak.
#include <cstdint>
#include <string>
#include <vector>

#include "tandem/analysis/roofline.hpp"
#include "tandem/model/model.hpp"
#include "tandem/runtime/engine.hpp"

namespace tandem::analysis {

struct BenchTest {
  enum class Kind { Prefill, Generate };
  Kind kind = Kind::Prefill;
  int64_t n = 0;      // tokens prefilled (pp) or generated (tg)
  int64_t depth = 0;  // tokens in the cache before the test (untimed)

  // "pp512", "tg128", "pp512@d8192", "tg64@d8192".
  std::string name() const;
};

// Tokens/s of every timed repeat and their summary.
struct BenchResult {
  BenchTest test;
  std::vector<double> tokens_per_s;
  double median = 0, min = 0, max = 0, mean = 0, stddev = 0;
  double kv_bytes = 0;  // the test's KV cache as allocated
};

// Runs the test on `engine`: pre-fills `depth` random tokens once (untimed), then a
// warm-up run and `repeats` timed runs, each on the cache truncated back to the depth.
// pp: one forward of all N tokens with one output row. tg: N forwards of one token each
// (fixed ids, no sampling), one output row each. Throws Error(BadInput) for n < 1,
// depth < 0 or repeats < 1, Error(Resource) when the cache does not fit.
BenchResult run_bench(Engine& engine, const BenchTest& test, int repeats, uint64_t seed = 1234);

// The median of values (not empty).
double median(std::vector<double> values);
// Median, min, max, mean and sample standard deviation of `values` (not empty).
void summarize(BenchResult& r);

// Where a test sits against the roofline.
struct RooflinePoint {
  bool bandwidth_bound = false;  // tg: memory bandwidth; pp: FMA peak
  // tg: bytes read per generated token (weights + K/V at the test's mean context);
  // pp: FLOPs per prefilled token (matrix products + attention at the test's length).
  double cost_per_token = 0;
  double bound_tokens_per_s = 0;  // roofline bound on tokens/s
  double achieved = 0;            // tg: bytes/s; pp: FLOP/s
  double fraction = 0;            // achieved / roof = tokens_per_s / bound_tokens_per_s
};

// Bytes read per generated token at cache length ctx: every matrix once (weight_bytes)
// plus K and V of every layer, 2 * L * ctx * (a G*d row stored as kv_type: 4 bytes a
// value for f32, 34 per 32 for q8_0).
double decode_bytes_per_token(const Model& m, double ctx, DType kv_type = DType::F32);
// FLOPs of a prefill of n tokens after `depth` cached ones: 2 FLOPs per matrix weight per
// token in the layers, the output projection for the one output row, and attention
// (QK^T and PV: 4 * H * d per visible key per layer, causal).
double prefill_flops(const Model& m, int64_t n, int64_t depth);

RooflinePoint roofline_point(const Model& m, const BenchTest& test, double tokens_per_s,
                             const Roofline& roof, DType kv_type = DType::F32);

}  // namespace tandem::analysis
