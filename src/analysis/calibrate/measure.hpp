#pragma once
// Internal to calibrate: timing a call, operands that defeat the caches as a model's
// layers do, and one attention call's rate, shared by the node's grids (calibrate.cpp)
// and a model shape's own calls (shape_calls.cpp).
#include <sched.h>

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

// While alive, the calling thread, and the threads it starts (a pool's workers), run on
// the first n CPUs this process may use (all of them where n exceeds their count); the
// thread's previous set comes back after. The curves at T threads are timed on the
// first T cores, whose pace CoreProbe::pace(T) reads, as compare binds rank 0.
class PinFirst {
 public:
  explicit PinFirst(int n);
  ~PinFirst();
  PinFirst(const PinFirst&) = delete;
  PinFirst& operator=(const PinFirst&) = delete;

 private:
  cpu_set_t saved_{};
  bool pinned_ = false;
};

// "cores, one thread each: f16 product 113.1, 75.2 GFLOP/s, attention ..." (3 rounds).
std::string core_rates_line(CoreProbe& probe);

// A curve timed over the cores' pace (rates / CoreProbe::pace), held at the rates `r`:
// attention curves at r.attention; product curves at r.stream where their "tokens"
// point is one token (decode's calls stream their weights) and r.product elsewhere.
void hold_at(Curve& c, const CoreRates& r, CoreWork kind);
// The probe's uncontended rate of each kind.
inline CoreRates uncontended_rates(const CoreProbe& p) {
  return {p.uncontended(CoreWork::Product), p.uncontended(CoreWork::Attention), p.uncontended(CoreWork::Stream)};
}

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
