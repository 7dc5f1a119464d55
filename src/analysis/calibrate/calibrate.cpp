// tandem calibrate: this node's curves (matrix products, attention, per-op fixed costs,
// streaming bandwidth) measured with the runtime's own kernels.
#include "tandem/analysis/calibrate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>

#include "analysis/measure.hpp"
#include "tandem/analysis/roofline.hpp"
#include "tandem/core/dtype.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/quant_rows.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::analysis {
namespace {

// FLOP/s of products of `type` over threads x tokens x cols x rows of W: the inputs per
// output (cols) set how long each dot product runs, the outputs how the work splits.
Curve matmul_curve(DType type, const std::vector<double>& threads,
                   const CalibrateOptions& o, CoreProbe& probe) {
  const std::vector<double> tokens = {1, 16, 512}, cols = {256, 1024, 4096}, rows = {256, 2048};
  Curve c = Curve::grid({"threads", "tokens", "cols", "rows"}, {threads, tokens, cols, rows});
  const auto x = random_floats(size_t(tokens.back()) * size_t(cols.back()), 3);
  std::vector<float> y(size_t(tokens.back()) * size_t(rows.back()));
  for (size_t k = 0; k < cols.size(); ++k)
    for (size_t r = 0; r < rows.size(); ++r) {
      const Weights w = make_weights(type, int64_t(rows[r]), int64_t(cols[k]));
      for (size_t t = 0; t < threads.size(); ++t) {
        const PinFirst pin(int(threads[t]));
        kernels::ThreadPool pool(int(threads[t]));
        const double pace = probe.pace(CoreWork::Product, int(threads[t])),
                     stream = probe.pace(CoreWork::Stream, int(threads[t]));
        for (size_t m = 0; m < tokens.size(); ++m) {
          const double s = time_call([&](int i) {
            kernels::matmul(w.views[size_t(i) % w.views.size()], x.data(), int64_t(tokens[m]), y.data(), pool);
          }, 0.006);
          c.values[c.index({t, m, k, r})] = 2 * tokens[m] * rows[r] * cols[k] / s / (tokens[m] <= 1 ? stream : pace);
        }
      }
    }
  if (o.progress)
    o.progress(fmt::format("matmul {}: {:.1f} GFLOP/s at 512 tokens, {:.1f} at 1 (1024 x 2048, {} threads)",
                           info(type).name,
                           c.at({{"threads", threads.back()}, {"tokens", 512}, {"cols", 1024}, {"rows", 2048}}) * probe.uncontended(CoreWork::Product) / 1e9,
                           c.at({{"threads", threads.back()}, {"tokens", 1}, {"cols", 1024}, {"rows", 2048}}) * probe.uncontended(CoreWork::Stream) / 1e9,
                           threads.back()));
  return c;
}

// FLOP/s of causal attention over threads x queries per call x keys each query sees x
// query heads per KV head x query heads per call (a rank of Ulysses computes a few
// heads), at d = 64 (attention_rate: a prefill chunk, or a ring block of keys).
Curve attention_curve(const std::vector<double>& threads, const CalibrateOptions& o, CoreProbe& probe) {
  const std::vector<double> queries = {1, 16, 128, 1024}, keys = {64, 512, 2048}, groups = {1, 4},
                            heads = {4, 16};
  Curve c = Curve::grid({"threads", "queries", "keys", "group", "heads"},
                        {threads, queries, keys, groups, heads});
  for (size_t t = 0; t < threads.size(); ++t) {
    const PinFirst pin(int(threads[t]));
    kernels::ThreadPool pool(int(threads[t]));
    for (size_t qi = 0; qi < queries.size(); ++qi) {
      const double pace = probe.pace(CoreWork::Attention, int(threads[t]));
      for (size_t k = 0; k < keys.size(); ++k)
        for (size_t g = 0; g < groups.size(); ++g)
          for (size_t hi = 0; hi < heads.size(); ++hi) {
            const int H = int(heads[hi]);
            c.values[c.index({t, qi, k, g, hi})] =
                attention_rate(pool, H, H / int(groups[g]), 64, int64_t(queries[qi]), keys[k]) / pace;
          }
    }
  }
  if (o.progress)
    o.progress(fmt::format("attention: {:.1f} GFLOP/s at 1024 queries x 2048 keys, {:.1f} at 1 query (16 heads, {} threads)",
                           c.at({{"threads", threads.back()}, {"queries", 1024}, {"keys", 2048}, {"group", 1}, {"heads", 16}}) * probe.uncontended(CoreWork::Attention) / 1e9,
                           c.at({{"threads", threads.back()}, {"queries", 1}, {"keys", 2048}, {"group", 1}, {"heads", 16}}) * probe.uncontended(CoreWork::Attention) / 1e9,
                           threads.back()));
  return c;
}

// Seconds of one small op through the pool (dispatch and barrier): an RMSNorm of 4 rows.
Curve op_overhead_curve(const std::vector<double>& threads, const CalibrateOptions& o, CoreProbe& probe) {
  Curve c = Curve::grid({"threads"}, {threads});
  const auto x = random_floats(4 * 256, 1), w = random_floats(256, 2);
  std::vector<float> y(x.size());
  for (size_t t = 0; t < threads.size(); ++t) {
    const PinFirst pin(int(threads[t]));
    kernels::ThreadPool pool(int(threads[t]));
    const double pace = probe.pace(CoreWork::Product, int(threads[t]));
    c.values[t] = pace * time_call([&](int) { kernels::rmsnorm(x.data(), w.data(), y.data(), 4, 256, 1e-5f, pool); });
  }
  if (o.progress)
    o.progress(fmt::format("op overhead: {:.1f} us ({} threads)", c.values.back() / probe.uncontended(CoreWork::Product) * 1e6, threads.back()));
  return c;
}

// Bytes/s of streaming reads over threads x buffer size (caches serve the small ones).
Curve bandwidth_curve(const std::vector<double>& threads, const CalibrateOptions& o,
                      double* fma_peak, double* big_bandwidth) {
  const std::vector<double> bytes = {1 << 20, 8 << 20, 64 << 20, 512 << 20};
  Curve c = Curve::grid({"threads", "bytes"}, {threads, bytes});
  for (size_t t = 0; t < threads.size(); ++t)
    for (size_t b = 0; b < bytes.size(); ++b) {
      const PinFirst pin(int(threads[t]));
      RooflineOptions ro;
      ro.threads = int(threads[t]);
      ro.buffer_bytes = size_t(bytes[b]);
      ro.passes = 3;
      const Roofline r = measure_roofline(ro);
      c.values[c.index({t, b})] = r.read_bandwidth;
      if (t + 1 == threads.size() && b + 1 == bytes.size()) *fma_peak = r.fma_peak, *big_bandwidth = r.read_bandwidth;
    }
  if (o.progress)
    o.progress(fmt::format("bandwidth: {:.1f} GB/s from memory, {:.1f} from 1 MiB ({} threads)",
                           *big_bandwidth / 1e9, c.values[c.index({threads.size() - 1, 0})] / 1e9, threads.back()));
  return c;
}

}  // namespace

HardwareProfile calibrate_node(const CalibrateOptions& opts) {
  if (opts.threads < 1) bad_input("calibrate: -t {} must be >= 1", opts.threads);
  const auto threads = thread_points(opts.threads);
  HardwareProfile h;
  h.threads = opts.threads;
  h.activation_bytes = 4;
  // This host's cores need not run alike, nor at one speed over time: compute is timed
  // over the cores' pace at that moment (CoreProbe), then held at their uncontended rate.
  CoreProbe probe(opts.threads);
  if (opts.progress) opts.progress(core_rates_line(probe));
  double peak = 0, bw = 0;
  h.curves.bandwidth = bandwidth_curve(threads, opts, &peak, &bw);
  h.flops["f32"] = peak;
  h.memory_bandwidth = bw;
  h.memory_efficiency = 1.0;
  h.curves.op_overhead = op_overhead_curve(threads, opts, probe);
  std::vector<std::string> types = opts.types;
  if (types.empty())
    for (const DTypeInfo& t : dtype_table())
      if (t.matrix) types.emplace_back(t.name);
  for (const std::string& name : types) {
    const auto t = parse_dtype(name);
    if (!t || !info(*t).matrix) bad_input("calibrate: --types: '{}' is not a weight type", name);
    h.curves.matmul[name] = matmul_curve(*t, threads, opts, probe);
  }
  h.curves.attention = attention_curve(threads, opts, probe);
  if (probe.active()) {
    h.core_rate = uncontended_rates(probe);
    for (auto& [name, c] : h.curves.matmul) hold_at(c, h.core_rate, CoreWork::Product);
    hold_at(h.curves.attention, h.core_rate, CoreWork::Attention);
    h.curves.op_overhead.scale(1 / h.core_rate.product);  // seconds
  }
  // The constant figures, for what reads no curve: a 512-token f32 product's share of peak.
  const Curve& f32 = h.curves.matmul.count("f32") ? h.curves.matmul.at("f32") : h.curves.matmul.begin()->second;
  h.efficiency = std::clamp(
      f32.at({{"threads", double(opts.threads)}, {"tokens", 512}, {"cols", 1024}, {"rows", 2048}}) / peak,
      0.01, 1.0);
  return h;
}

}  // namespace tandem::analysis
