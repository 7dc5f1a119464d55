#include "tandem/graph/executor.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "tandem/core/error.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem::graph {

namespace k = kernels;

namespace {

// Buffer specs of the graph's values: live from the node that writes a value to the last
// node that reads it; in place where the op allows it.
std::vector<BufferSpec> buffer_specs(const Graph& g) {
  std::vector<BufferSpec> specs(g.values.size());
  std::vector<bool> born(g.values.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    for (ValueId v : n.outputs()) {
      const Value& val = g.values[size_t(v)];
      BufferSpec& s = specs[size_t(v)];
      born[size_t(v)] = true;
      s.bytes = val.external ? 0 : size_t(val.stored_floats()) * sizeof(float);
      s.first_use = s.last_use = int32_t(i);
    }
    for (ValueId v : n.in) specs[size_t(v)].last_use = int32_t(i);
    const bool in_place_op = n.kind == OpKind::Add || n.kind == OpKind::SwiGlu ||
                             n.kind == OpKind::GeGlu || n.kind == OpKind::Rope ||
                             n.kind == OpKind::SoftCap;
    if (in_place_op && !g.values[size_t(n.out)].external) {
      const Value& a = g.values[size_t(n.in[0])];
      const Value& o = g.values[size_t(n.out)];
      if (a.row0 == o.row0 && a.cols == o.cols && !a.external)
        specs[size_t(n.out)].in_place_of = n.in[0];
    }
  }
  return specs;
}

// One buffer per value, back to back: what running without a plan costs.
ActivationPlan unplanned(std::span<const BufferSpec> specs, size_t alignment) {
  ActivationPlan p;
  p.alignment = alignment;
  p.offsets.assign(specs.size(), 0);
  p.in_place_of.assign(specs.size(), -1);
  for (size_t i = 0; i < specs.size(); ++i) {
    p.offsets[i] = p.arena_bytes;
    p.arena_bytes += (specs[i].bytes + alignment - 1) / alignment * alignment;
  }
  p.unplanned_bytes = p.arena_bytes;
  return p;
}

}  // namespace

Executor::Executor(Graph g, ExecOptions opt) : g_(std::move(g)), opt_(opt) {
  g_.validate();
  const auto specs = buffer_specs(g_);
  const ActivationPlan planned = plan_activations(specs);
  plan_ = opt_.plan_memory ? planned : unplanned(specs, planned.alignment);
  arena_ = ActivationArena(plan_);
  mem_.arena_bytes = plan_.arena_bytes;
  mem_.planned_bytes = planned.arena_bytes;
  mem_.unplanned_bytes = planned.unplanned_bytes;
  mem_.live_bytes_max = planned.live_bytes_max;
  bound_.assign(g_.values.size(), nullptr);
  dies_after_.resize(g_.nodes.size());
  if (opt_.poison_dead) {
    std::vector<bool> claimed(specs.size(), false);
    for (int32_t v : plan_.in_place_of)
      if (v >= 0) claimed[size_t(v)] = true;
    for (size_t v = 0; v < specs.size(); ++v)
      if (specs[v].bytes > 0 && !claimed[v])
        dies_after_[size_t(specs[v].last_use)].push_back(ValueId(v));
  }
  for (size_t v = 0; v < g_.values.size(); ++v)
    if (g_.values[v].external) externals_.push_back(ValueId(v));

  // Kernel specs of the matmuls, fixed once: only external outputs are bound per step.
  rope_tables_.resize(g_.ropes.size());
  needs_table_.assign(g_.ropes.size(), false);
  mm_.resize(g_.nodes.size());
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    const Node& n = g_.nodes[i];
    if (n.kind != OpKind::MatMul) continue;
    TD_CHECK(!opt_.reference || (n.mats.size() == 1 && !n.norm_w && !n.glu && !n.mats[0].rope));
    k::FusedMatmul& f = mm_[i];
    f.norm_w = n.norm_w;
    f.eps = n.eps;
    f.glu = n.glu;
    f.rope = size_t(n.rope_id) < rope_tables_.size() ? &rope_tables_[size_t(n.rope_id)] : nullptr;
    for (const MatSpec& s : n.mats) {
      f.outs.push_back({s.w, nullptr, s.bias, s.rope ? g_.ropes[size_t(n.rope_id)].d : 0});
      if (s.rope) needs_table_[size_t(n.rope_id)] = true;
    }
    // Kernel choices for this node's rows, made now and not per step.
    if (!opt_.reference && opt_.threads > 0) k::plan_matmul(f, g_.m - n.row_from, opt_.threads, f.plan);
  }
}

float* Executor::ptr(ValueId v, int64_t row) {
  const Value& val = g_.values[size_t(v)];
  float* base = val.external ? bound_[size_t(v)]
                             : reinterpret_cast<float*>(arena_.buffer(plan_, size_t(v)));
  return base + (row - val.row0) * val.cols;
}

void Executor::run(const int32_t* ids, const int32_t* pos, std::span<float* const> outputs,
                   const AttendFn& attend, kernels::ThreadPool& pool, Trace* trace,
                   OpTimer* timer) {
  TD_CHECK(outputs.size() == externals_.size());
  for (size_t i = 0; i < externals_.size(); ++i) bound_[size_t(externals_[i])] = outputs[i];
  for (size_t r = 0; r < rope_tables_.size(); ++r)
    if (needs_table_[r]) rope_tables_[r].build(pos, g_.m, g_.ropes[r].spec);
  // One trace span per run of consecutive nodes of the same phase.
  const char* phase = nullptr;
  double begin = 0;
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    const Node& n = g_.nodes[i];
    if (trace && n.phase != phase) {
      if (phase) trace->add(phase, "compute", begin, now_seconds());
      phase = n.phase;
      begin = now_seconds();
    }
    const double t0 = timer ? now_seconds() : 0;
    run_node(n, i, ids, pos, attend, pool);
    if (timer) timer->add(n, g_.m - n.row_from, now_seconds() - t0);
    for (ValueId v : dies_after_[i]) {
      const Value& val = g_.values[size_t(v)];
      float* p = ptr(v, val.row0);
      std::fill(p, p + val.stored_floats(), std::numeric_limits<float>::quiet_NaN());
    }
  }
  if (trace && phase) trace->add(phase, "compute", begin, now_seconds());
}

void Executor::run_node(const Node& n, size_t index, const int32_t* ids, const int32_t* pos,
                        const AttendFn& attend, kernels::ThreadPool& pool) {
  const bool ref = opt_.reference;
  const int64_t r0 = n.row_from;
  const int64_t rows = n.kind == OpKind::Attention ? g_.m : g_.m - r0;
  if (rows <= 0 && n.kind != OpKind::Attention) return;
  switch (n.kind) {
    case OpKind::Embed: {
      float* out = ptr(n.out, r0);
      (ref ? k::ref::get_rows : k::get_rows)(n.mats[0].w, ids + r0, rows, out);
      if (n.scale != 1.0f)
        (ref ? k::ref::scale : k::scale)(out, rows * g_.values[size_t(n.out)].cols, n.scale);
      return;
    }
    case OpKind::RmsNorm: {
      const int64_t width = g_.values[size_t(n.out)].cols;
      const int64_t cols = n.norm_cols > 0 ? n.norm_cols : width;
      const int64_t runs = rows * (width / cols);  // rows of `cols` values each
      if (ref)
        k::ref::rmsnorm(ptr(n.in[0], r0), n.norm_w, ptr(n.out, r0), runs, cols, n.eps);
      else
        k::rmsnorm(ptr(n.in[0], r0), n.norm_w, ptr(n.out, r0), runs, cols, n.eps, pool);
      return;
    }
    case OpKind::MatMul: {
      if (ref) {
        const MatSpec& s = n.mats[0];
        k::ref::matmul(s.w, ptr(n.in[0], r0), rows, ptr(s.out, r0), s.bias);
        return;
      }
      k::FusedMatmul& f = mm_[index];
      for (size_t j = 0; j < n.mats.size(); ++j)
        f.outs[j].y = n.mats[j].out >= 0 ? ptr(n.mats[j].out, r0) : nullptr;
      k::matmul_fused(f, ptr(n.in[0], r0), r0, g_.m, pool);
      return;
    }
    case OpKind::Rope: {
      float* out = ptr(n.out, r0);
      const float* in = ptr(n.in[0], r0);
      const int64_t cols = g_.values[size_t(n.out)].cols;
      if (out != in) std::memcpy(out, in, size_t(rows * cols) * sizeof(float));
      const RopeParams& rp = g_.ropes[size_t(n.rope_id)];
      if (ref)
        k::ref::rope(out, rows, n.rope_heads, rp.d, rp.spec, pos + r0);
      else
        k::rope(out, rows, n.rope_heads, rp.d, rp.spec, pos + r0, pool);
      return;
    }
    case OpKind::Add: {
      float* out = ptr(n.out, r0);
      const float* a = ptr(n.in[0], r0);
      const int64_t len = rows * g_.values[size_t(n.out)].cols;
      if (out != a) std::memcpy(out, a, size_t(len) * sizeof(float));
      (ref ? k::ref::add : k::add)(out, ptr(n.in[1], r0), len);
      return;
    }
    case OpKind::SwiGlu: {
      const int64_t len = rows * g_.values[size_t(n.out)].cols;
      (ref ? k::ref::swiglu : k::swiglu)(ptr(n.in[0], r0), ptr(n.in[1], r0), ptr(n.out, r0), len);
      return;
    }
    case OpKind::GeGlu: {
      const int64_t len = rows * g_.values[size_t(n.out)].cols;
      (ref ? k::ref::geglu : k::geglu)(ptr(n.in[0], r0), ptr(n.in[1], r0), ptr(n.out, r0), len);
      return;
    }
    case OpKind::SoftCap: {
      const int64_t len = rows * g_.values[size_t(n.out)].cols;
      (ref ? k::ref::softcap : k::softcap)(ptr(n.in[0], r0), ptr(n.out, r0), len, n.cap);
      return;
    }
    case OpKind::Attention:
      attend(n.layer, ptr(n.in[0], 0), ptr(n.in[1], 0), ptr(n.in[2], 0), ptr(n.out, 0));
      return;
  }
}

}  // namespace tandem::graph
