#pragma once
// Internal to calibrate: timing a call, operands that defeat the caches as a model's
// layers do, and one attention call's rate, shared by the node's grids (calibrate.cpp)
// and a model shape's own calls (shape_calls.cpp).
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tandem/analysis/calibrate.hpp"
#include "tandem/core/dtype.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::analysis {

// Copies of an operand to rotate through so that each call reads it from memory, as a
// model's layers do: together at least twice the largest cache.
int copies_for(double bytes);

// Seconds of one call of fn(i) (i: the call's index, for rotation): the median of calls
// repeated for at least `min_seconds` (3 calls at least, after one to warm up).
template <class F>
double time_call(F&& fn, double min_seconds = 0.02) {
  fn(0);
  std::vector<double> t;
  const Stopwatch all;
  for (int i = 1; t.size() < 3 || (all.seconds() < min_seconds && t.size() < 400); ++i) {
    const Stopwatch sw;
    fn(i);
    t.push_back(sw.seconds());
  }
  std::nth_element(t.begin(), t.begin() + long(t.size() / 2), t.end());
  const double s = t[t.size() / 2];
  if (!(s > 0)) fail(ErrorKind::Internal, "calibrate: a timing came out as {} s", s);
  return s;
}

// 1, 2, 4, ... up to T, and T itself.
std::vector<double> thread_points(int T);

// "cores: 1-thread f16 product 52.1, 35.9 GFLOP/s (the slowest 0.69x the fastest)".
std::string core_rates_line(const std::vector<double>& rates);

std::vector<float> random_floats(size_t n, uint32_t seed);

// 64-byte aligned bytes.
struct Buffer {
  std::unique_ptr<uint8_t, decltype(&std::free)> p{nullptr, &std::free};
  explicit Buffer(size_t n);
  uint8_t* get() const { return p.get(); }
};

// Matrices of `type`, rows x cols, in copies to rotate through, packed as the runtime
// lays them out where the kernels have a layout of their own.
struct Weights {
  std::vector<Buffer> data, packed;
  std::vector<MatrixView> views;
};
Weights make_weights(DType type, int64_t rows, int64_t cols);

// FLOP/s (4 d per visible query-key pair and query head) of causal attention calls of
// nq queries with H query heads over G KV heads of dim d, each query seeing `keys` keys
// on average: the queries are the last of their keys (a prefill chunk) where keys >=
// nq / 2, else all after a block of `keys` keys (a ring block). K and V are f32 in pages
// of 256 keys, as the runtime's cache holds them, in copies rotated through.
double attention_rate(kernels::ThreadPool& pool, int H, int G, int d, int64_t nq, double keys,
                      double min_seconds = 0.02);

}  // namespace tandem::analysis
