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

#include "analysis/step_costs.hpp"
#include "tandem/analysis/roofline.hpp"
#include "tandem/core/dtype.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/quant_rows.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::analysis {
namespace {

// Bytes the largest cache holds (sysfs), 32 MiB when it does not say.
double last_cache_bytes() {
  for (const char* idx : {"index3", "index2"}) {
    std::ifstream f(fmt::format("/sys/devices/system/cpu/cpu0/cache/{}/size", idx));
    std::string s;
    if (f >> s && !s.empty()) {
      double v = std::atof(s.c_str());
      if (s.back() == 'K') v *= 1024;
      if (s.back() == 'M') v *= 1024 * 1024;
      if (v > 0) return v;
    }
  }
  return 32.0 * 1024 * 1024;
}

// Copies of an operand to rotate through so that each call reads it from memory, as a
// model's layers do: together at least twice the largest cache.
int copies_for(double bytes) {
  return int(std::clamp(std::ceil(2 * last_cache_bytes() / std::max(bytes, 1.0)), 1.0, 256.0));
}

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
std::vector<double> thread_points(int T) {
  std::vector<double> v;
  for (int t = 1; t < T; t *= 2) v.push_back(t);
  v.push_back(T);
  return v;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// 64-byte aligned bytes.
struct Buffer {
  std::unique_ptr<uint8_t, decltype(&std::free)> p{nullptr, &std::free};
  explicit Buffer(size_t n) : p(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64)), &std::free) {
    if (!p) fail(ErrorKind::Resource, "calibrate: cannot allocate {} bytes", n);
  }
  uint8_t* get() const { return p.get(); }
};

// Matrices of `type`, rows x cols, in copies to rotate through, packed as the runtime
// lays them out where the kernels have a layout of their own.
struct Weights {
  std::vector<Buffer> data, packed;
  std::vector<MatrixView> views;
};
Weights make_weights(DType type, int64_t rows, int64_t cols) {
  const DTypeInfo& ti = info(type);
  const size_t row_bytes = size_t(cols / ti.block_size) * ti.block_bytes;
  const size_t bytes = row_bytes * size_t(rows);
  Weights w;
  const auto src = random_floats(size_t(cols), 7);
  Buffer first(bytes);
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, src.data(), first.get() + size_t(r) * row_bytes, cols);
  const int n = copies_for(double(bytes));
  for (int i = 0; i < n; ++i) {
    w.data.emplace_back(bytes);
    std::memcpy(w.data.back().get(), first.get(), bytes);
    MatrixView v{type, rows, cols, w.data.back().get(), row_bytes};
    if (const size_t pb = kernels::packed_size(v); pb > 0) {
      w.packed.emplace_back(pb);
      v.packed_layout = kernels::pack_weight(v, w.packed.back().get());
      v.packed = w.packed.back().get();
      v.packed_bytes = pb;
    }
    w.views.push_back(v);
  }
  return w;
}

// FLOP/s of products of `type` over threads x tokens x cols x rows of W: the inputs per
// output (cols) set how long each dot product runs, the outputs how the work splits.
Curve matmul_curve(DType type, const std::vector<double>& threads,
                   const CalibrateOptions& o) {
  const std::vector<double> tokens = {1, 16, 512}, cols = {256, 1024, 4096}, rows = {256, 2048};
  Curve c = Curve::grid({"threads", "tokens", "cols", "rows"}, {threads, tokens, cols, rows});
  const auto x = random_floats(size_t(tokens.back()) * size_t(cols.back()), 3);
  std::vector<float> y(size_t(tokens.back()) * size_t(rows.back()));
  for (size_t k = 0; k < cols.size(); ++k)
    for (size_t r = 0; r < rows.size(); ++r) {
      const Weights w = make_weights(type, int64_t(rows[r]), int64_t(cols[k]));
      for (size_t t = 0; t < threads.size(); ++t) {
        kernels::ThreadPool pool(int(threads[t]));
        for (size_t m = 0; m < tokens.size(); ++m) {
          const double s = time_call([&](int i) {
            kernels::matmul(w.views[size_t(i) % w.views.size()], x.data(), int64_t(tokens[m]), y.data(), pool);
          }, 0.006);
          c.values[c.index({t, m, k, r})] = 2 * tokens[m] * rows[r] * cols[k] / s;
        }
      }
    }
  if (o.progress)
    o.progress(fmt::format("matmul {}: {:.1f} GFLOP/s at 512 tokens, {:.1f} at 1 (1024 x 2048, {} threads)",
                           info(type).name,
                           c.at({{"threads", threads.back()}, {"tokens", 512}, {"cols", 1024}, {"rows", 2048}}) / 1e9,
                           c.at({{"threads", threads.back()}, {"tokens", 1}, {"cols", 1024}, {"rows", 2048}}) / 1e9,
                           threads.back()));
  return c;
}

// FLOP/s of causal attention (4 d FLOPs per visible query-key-head triple) over threads x
// queries per call x keys each query sees x query heads per KV head x query heads per
// call (a rank of Ulysses computes a few heads), at d = 64: the queries of a call are the last of its keys (a prefill chunk), or,
// where the keys are fewer than half the queries, all after them (a ring block).
Curve attention_curve(const std::vector<double>& threads, const CalibrateOptions& o) {
  const std::vector<double> queries = {1, 16, 128, 1024}, keys = {64, 512, 2048}, groups = {1, 4},
                            heads = {4, 16};
  const int d = 64;
  Curve c = Curve::grid({"threads", "queries", "keys", "group", "heads"},
                        {threads, queries, keys, groups, heads});
  for (size_t hi = 0; hi < heads.size(); ++hi)
  for (size_t g = 0; g < groups.size(); ++g) {
    const int H = int(heads[hi]), G = H / int(groups[g]);
    const auto q = random_floats(size_t(queries.back()) * H * d, 5);
    std::vector<float> out(q.size());
    for (size_t k = 0; k < keys.size(); ++k) {
      for (size_t qi = 0; qi < queries.size(); ++qi) {
        const int64_t nq = int64_t(queries[qi]);
        // Causal band: n_kv keys, the queries at the last nq positions, seeing on average
        // n_kv - (nq - 1) / 2 keys; else a block of keys before every query.
        const bool band = keys[k] >= double(nq + 1) / 2;
        const int64_t n_kv = band ? int64_t(keys[k] + double(nq - 1) / 2) : int64_t(keys[k]);
        const int n_copies = copies_for(double(n_kv) * G * d * 4 * 2);
        std::vector<std::vector<float>> kbuf, vbuf;
        for (int i = 0; i < n_copies; ++i) {
          kbuf.push_back(random_floats(size_t(n_kv) * G * d, 11 + uint32_t(i)));
          vbuf.push_back(kbuf.back());
        }
        std::vector<int32_t> kv_pos(static_cast<size_t>(n_kv)), q_pos(static_cast<size_t>(nq));
        for (int64_t j = 0; j < n_kv; ++j) kv_pos[size_t(j)] = int32_t(j);
        for (int64_t j = 0; j < nq; ++j) q_pos[size_t(j)] = int32_t(band ? n_kv - nq + j : n_kv + j);
        double visible = 0;
        for (int64_t j = 0; j < nq; ++j) visible += std::min(double(n_kv), double(q_pos[size_t(j)]) + 1);
        // Pages of 256 keys, as the runtime's cache holds them (kDefaultKvPage).
        const int64_t T = 256;
        std::vector<std::vector<KvPage>> pages(kbuf.size());
        for (size_t i = 0; i < kbuf.size(); ++i)
          for (int64_t p0 = 0; p0 < n_kv; p0 += T)
            pages[i].push_back({kbuf[i].data() + p0 * G * d, vbuf[i].data() + p0 * G * d, kv_pos.data() + p0});
        for (size_t t = 0; t < threads.size(); ++t) {
          kernels::ThreadPool pool(int(threads[t]));
          const double s = time_call([&](int i) {
            kernels::AttentionArgs a;
            a.n_q = nq;
            a.q = q.data();
            a.q_pos = q_pos.data();
            a.n_kv = n_kv;
            a.k = kbuf[size_t(i) % kbuf.size()].data();
            a.v = vbuf[size_t(i) % vbuf.size()].data();
            a.kv_pos = kv_pos.data();
            a.kv_stride = int64_t(G) * d;
            a.H = H, a.G = G, a.d = d;
            a.scale = 1.0f / 8;
            a.out = out.data();
            a.pages = {T, pages[size_t(i) % pages.size()].data(), DType::F32, size_t(G * d) * 4};
            kernels::attention(a, pool);
          });
          c.values[c.index({t, qi, k, g, hi})] = 4.0 * d * H * visible / s;
        }
      }
    }
  }
  if (o.progress)
    o.progress(fmt::format("attention: {:.1f} GFLOP/s at 1024 queries x 2048 keys, {:.1f} at 1 query (16 heads, {} threads)",
                           c.at({{"threads", threads.back()}, {"queries", 1024}, {"keys", 2048}, {"group", 1}, {"heads", 16}}) / 1e9,
                           c.at({{"threads", threads.back()}, {"queries", 1}, {"keys", 2048}, {"group", 1}, {"heads", 16}}) / 1e9,
                           threads.back()));
  return c;
}

// Seconds of one small op through the pool (dispatch and barrier): an RMSNorm of 4 rows.
Curve op_overhead_curve(const std::vector<double>& threads, const CalibrateOptions& o) {
  Curve c = Curve::grid({"threads"}, {threads});
  const auto x = random_floats(4 * 256, 1), w = random_floats(256, 2);
  std::vector<float> y(x.size());
  for (size_t t = 0; t < threads.size(); ++t) {
    kernels::ThreadPool pool(int(threads[t]));
    c.values[t] = time_call([&](int) { kernels::rmsnorm(x.data(), w.data(), y.data(), 4, 256, 1e-5f, pool); });
  }
  if (o.progress) o.progress(fmt::format("op overhead: {:.1f} us ({} threads)", c.values.back() * 1e6, threads.back()));
  return c;
}

// Bytes/s of streaming reads over threads x buffer size (caches serve the small ones).
Curve bandwidth_curve(const std::vector<double>& threads, const CalibrateOptions& o,
                      double* fma_peak, double* big_bandwidth) {
  const std::vector<double> bytes = {1 << 20, 8 << 20, 64 << 20, 512 << 20};
  Curve c = Curve::grid({"threads", "bytes"}, {threads, bytes});
  for (size_t t = 0; t < threads.size(); ++t)
    for (size_t b = 0; b < bytes.size(); ++b) {
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
  double peak = 0, bw = 0;
  h.curves.bandwidth = bandwidth_curve(threads, opts, &peak, &bw);
  h.flops["f32"] = peak;
  h.memory_bandwidth = bw;
  h.memory_efficiency = 1.0;
  h.curves.op_overhead = op_overhead_curve(threads, opts);
  std::vector<std::string> types = opts.types;
  if (types.empty())
    for (const DTypeInfo& t : dtype_table())
      if (t.matrix) types.emplace_back(t.name);
  for (const std::string& name : types) {
    const auto t = parse_dtype(name);
    if (!t || !info(*t).matrix) bad_input("calibrate: --types: '{}' is not a weight type", name);
    h.curves.matmul[name] = matmul_curve(*t, threads, opts);
  }
  h.curves.attention = attention_curve(threads, opts);
  h.curves.graph_build = graph_build_curve(threads);
  h.curves.file_fault = file_fault_curve();
  if (opts.progress)
    opts.progress(fmt::format("graph build: {:.2f} ms per step shape at 8 layers ({} threads); "
                              "mapped-file page fault {:.1f} us",
                              h.curves.graph_build.values.back() * 1e3, opts.threads,
                              h.curves.file_fault.values[0] * 1e6));
  // The constant figures, for what reads no curve: a 512-token f32 product's share of peak.
  const Curve& f32 = h.curves.matmul.count("f32") ? h.curves.matmul.at("f32") : h.curves.matmul.begin()->second;
  h.efficiency = std::clamp(
      f32.at({{"threads", double(opts.threads)}, {"tokens", 512}, {"cols", 1024}, {"rows", 2048}}) / peak,
      0.01, 1.0);
  return h;
}

}  // namespace tandem::analysis
