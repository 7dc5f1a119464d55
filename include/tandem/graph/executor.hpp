#pragma once
// Runs a graph: its buffers planned once (memory/activation_plan.hpp) into one arena,
// its fused matmul specs made once, then replayed every step.
#include <cstdint>
#include <functional>
#include <span>

#include "tandem/core/trace.hpp"
#include "tandem/graph/graph.hpp"
#include "tandem/kernels/fused.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/memory/activation_plan.hpp"

namespace tandem::graph {

struct ExecOptions {
  bool plan_memory = true;  // false: every value gets its own buffer (the unplanned sum)
  bool reference = false;   // plain scalar reference kernels (the graph must be unfused)
  // Tests: fill every buffer with NaN once its last reader has run, so a value that
  // shared bytes with a live one would corrupt the result.
  bool poison_dead = false;
  // Threads of the pool the graph will run on: the matmul kernel plans are made for it
  // when the graph is compiled (0: planned at the first run instead).
  int threads = 0;
};

// Attention of one layer: queries q [m][H*d], new keys and values k, v [m][G*d]; writes
// out [m][H*d]. Provided by the caller (the sequence-attention strategy).
using AttendFn =
    std::function<void(int layer, const float* q, const float* k, const float* v, float* out)>;

struct MemoryStats {
  size_t arena_bytes = 0;      // what the executor holds
  size_t planned_bytes = 0;    // the plan's peak
  size_t unplanned_bytes = 0;  // one buffer per value
  size_t live_bytes_max = 0;   // lower bound of any plan
};

// Told how long each node of a step ran (Engine::set_op_timer: calibrate measures a model's
// calls inside its forward pass). `rows`: the rows the node computed.
class OpTimer {
 public:
  virtual ~OpTimer() = default;
  virtual void add(const Node& n, int64_t rows, double seconds) = 0;
};

class Executor {
 public:
  // Validates the graph, plans its buffers and allocates them. The weights the graph
  // points at must outlive the executor.
  Executor(Graph g, ExecOptions opt);

  // One step: ids and pos of the graph's m tokens; `outputs` binds the external values in
  // id order (each points at the value's stored rows).
  void run(const int32_t* ids, const int32_t* pos, std::span<float* const> outputs,
           const AttendFn& attend, kernels::ThreadPool& pool, Trace* trace = nullptr,
           OpTimer* timer = nullptr);

  const Graph& graph() const { return g_; }
  const MemoryStats& memory() const { return mem_; }

 private:
  float* ptr(ValueId v, int64_t row);
  void run_node(const Node& n, size_t index, const int32_t* ids, const int32_t* pos,
                const AttendFn& attend, kernels::ThreadPool& pool);

  Graph g_;
  ExecOptions opt_;
  ActivationPlan plan_;
  ActivationArena arena_;
  MemoryStats mem_;
  std::vector<ValueId> externals_;       // in id order
  std::vector<float*> bound_;            // per value: external pointer for this step
  std::vector<kernels::FusedMatmul> mm_;  // per node (MatMul nodes only)
  std::vector<std::vector<ValueId>> dies_after_;  // per node: buffers free after it (poison)
  std::vector<kernels::RopeTable> rope_tables_;  // per Graph::ropes entry
  std::vector<bool> needs_table_;                // read by a fused rope
};

}  // namespace tandem::graph
