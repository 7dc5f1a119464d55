#pragma once
// `tandem calibrate`: measures this machine into the curves of a hardware profile
// (analysis/hardware.hpp, ProfileCurves): matrix products per weight type, attention,
// per-op fixed costs and streaming bandwidth at 1..T threads on one node, and message
// and all-to-all rates between two ranks (measure_links, run under MPI). Every figure
// is measured; a measurement that cannot be made throws, naming it.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tandem/analysis/hardware.hpp"
#include "tandem/analysis/model_shapes.hpp"

namespace tandem::comm {
class Communicator;
}

namespace tandem::analysis {

struct CalibrateOptions {
  int threads = 1;                 // T: the node's threads (the curves span 1..T)
  std::vector<std::string> types;  // weight types of the matmul curves; empty: all
  // Called with a line of progress ("matmul q8_0 ...").
  std::function<void(const std::string&)> progress;
};

// The speed of the node's cores one by one: FLOP/s of one thread pinned to each core in
// turn at each kind of work (CoreWork, hardware.hpp), with the runtime's kernels: an f16
// product of 256 tokens by 768 x 288 weights, the same at one token (its weights in
// copies rotated through, so streamed from memory), an attention call of 256 queries
// over 1024 keys (8 heads of 64).
// The cores of a shared host are not alike over time: on this project's 2-core VM each
// core switched, seconds apart, between about 110-135 and 72-80 GFLOP/s of the product
// (work of another tenant on the same physical core, it seems; the VM reports no steal
// time), while the attention call lost less (94-105 against 83-89: compare's results.json
// `core_rates`), and a run on a slow core takes longer. calibrate times its compute over
// the cores' pace at that moment and holds its curves at the cores' uncontended rates
// (HardwareProfile::core_rate); compare probes the cores around each run and the planner
// predicts the run on the cores as they went.
class CoreProbe {
 public:
  // Probes the first n CPUs this process may use; none where it may use fewer.
  explicit CoreProbe(int n);
  ~CoreProbe();
  CoreProbe(const CoreProbe&) = delete;
  CoreProbe& operator=(const CoreProbe&) = delete;
  using Work = CoreWork;
  bool active() const;
  // Each probed core's rate at `w` now, the median of `rounds` (empty when not active).
  // The calling thread's CPU set is as it was after.
  std::vector<double> rates(Work w, int rounds = 1);
  // Each probed core's rate at `w` while every probed core (the first `cores` of them
  // where cores > 0) runs the same work at once (one pinned thread each, started
  // together), the median of `rounds`.
  std::vector<double> together(Work w, int rounds = 1, int cores = 0);
  // The rate at `w` of the slowest of the first t cores now (one reading each; with every
  // core busy where t > 1, but for Stream): the pace of t threads that split work
  // evenly, as the runtime's pool does (1 when not active).
  double pace(Work w, int t);
  // The cores' rate at `w` when no other work slows them: the median of the readings so
  // far within 15% of the fastest (1 when none).
  double uncontended(Work w) const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The node's curves and figures (no links): flops["f32"] (FMA peak at T threads),
// efficiency (a 512-token f32 product's share of it), memory_bandwidth (T threads,
// a buffer far beyond the caches), threads = T, and curves.matmul, attention,
// op_overhead and bandwidth.
HardwareProfile calibrate_node(const CalibrateOptions& opts);

// Adds to h the calls of model shape `s` with weights of `dtype` (calibrate's spelling:
// "f16", "q8_0", ...), measured at 1..opts.threads threads as the runtime runs them: Q/K/V
// with RMSNorm and rope folded in, the attention output, gate/up with RMSNorm and SwiGLU
// folded in, down, the output head (ProfileCurves::shape_matmul), and its attention at its
// head dim and group (shape_attention). With the model's file at `path`, the products are
// timed inside its forward pass and the attention grid is scaled to its calls' time
// there; without (a named shape), each call is timed alone. Throws Error(BadInput) for a
// bad shape or type.
void calibrate_model_shape(HardwareProfile& h, const ModelShape& s, const std::string& dtype,
                           const std::string& path, const CalibrateOptions& opts);

// Between ranks 0 and 1 of `comm` (2 ranks or more; the others idle): one-way message
// rates and two-rank all-to-all rates by size, as curves over "bytes". Collective: every
// rank calls it; rank 0's result holds the curves.
struct LinkCurves {
  Curve message, alltoall;
  double latency = 0;    // seconds one way of an 8-byte message
  double bandwidth = 0;  // bytes/s of the largest message
};
LinkCurves measure_links(comm::Communicator& comm);
nlohmann::json link_curves_to_json(const LinkCurves& l);
LinkCurves link_curves_from_json(const nlohmann::json& j, const std::string& where);

}  // namespace tandem::analysis
