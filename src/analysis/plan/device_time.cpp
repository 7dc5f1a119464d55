// What one device's work costs: curves where the profile has them, else its constants.
#include "analysis/device_time.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tandem::analysis {

namespace {
// The matmul curve of a weight type: its own, else the types it computes as (bf16, f32),
// as HardwareProfile::flops_for falls back.
const Curve* matmul_curve(const HardwareProfile& hw, const std::string& dtype) {
  const std::string alias = dtype == "fp16" ? "f16" : dtype;
  for (const std::string& k : {dtype, alias, std::string("bf16"), std::string("f32")})
    if (auto it = hw.curves.matmul.find(k); it != hw.curves.matmul.end()) return &it->second;
  return nullptr;
}
// Turns the node's threads take on its cores: ceil(threads / cores) (1 on a GPU).
int turns_of(const HardwareProfile& hw, int threads, int sharers) {
  return hw.threads > 0 ? (threads * sharers + hw.threads - 1) / hw.threads : 1;
}

// How much longer a device's compute of one kind takes than the profile's curves say. A
// calibrated CPU profile holds its curves at one core rate per kind (`held`); where it
// also holds each core's rate as a run went (`now`), a device runs at the pace of the
// slowest core it uses (its threads split the work evenly) and devices in step wait for
// the slowest: the node's devices take cores in order (rank r of T threads the cores
// rT .. rT + T - 1, as compare binds them). More threads than cores take turns: the
// scheduler spreads them evenly over the cores (by count, not by speed), and devices in
// step wait for the slowest core's share, ceil(threads / cores) turns at its rate.
// Products and attention on more than one core at once run at the cores' busy rates
// where the probe read them (CoreRates::busy_*: a shared host's cores can be fast one at
// a time and slow together). One-token products (decode's: weights streamed from
// memory) take the busy rate only where the node's devices are separate processes
// (sharers > 1), each streaming a copy of its own weights as the busy probe streams
// its own copies; the threads of one device split one copy, which can stay partly in the
// shared cache from token to token, and keep the alone rate.
double slowdown(const HardwareProfile& hw, int threads, int sharers, CoreWork w) {
  if (hw.threads <= 0) return 1;  // a GPU
  const int used = threads * sharers;
  const int turns = turns_of(hw, threads, sharers);
  const double held = hw.core_rate.of(w);
  if (!(held > 0) || hw.core_rates.size() != size_t(hw.threads)) return turns;
  const int n = std::min(used, hw.threads);
  bool busy = n > 1 && (w != CoreWork::Stream || sharers > 1);
  for (int c = 0; c < n; ++c) busy &= hw.core_rates[size_t(c)].of(w, true) > 0;
  double slowest = hw.core_rates[0].of(w, busy);
  for (int c = 0; c < n; ++c) slowest = std::min(slowest, hw.core_rates[size_t(c)].of(w, busy));
  return held * turns / slowest;
}
}  // namespace

DeviceTime::DeviceTime(const HardwareProfile& hw, const std::string& dtype,
                       const std::string& attn_dtype, int threads, int sharers)
    : hw_(hw),
      dtype_(dtype),
      matmul_(matmul_curve(hw, dtype)),
      lin_rate_(hw.flops_for(dtype) * hw.efficiency),
      attn_rate_(hw.flops_for(attn_dtype) * hw.efficiency),
      threads_(std::max(threads, 1)),
      sharers_(std::max(sharers, 1)),
      slowdown_(slowdown(hw, threads_, sharers_, CoreWork::Product)),
      attn_slowdown_(slowdown(hw, threads_, sharers_, CoreWork::Attention)),
      stream_slowdown_(slowdown(hw, threads_, sharers_, CoreWork::Stream)),
      turns_(turns_of(hw, threads_, sharers_)),
      co_running_(hw.threads > 0 ? std::clamp(hw.threads / threads_, 1, sharers_) : 1) {}

double DeviceTime::bandwidth(double bytes) const {
  const Curve& c = hw_.curves.bandwidth;
  if (c.empty()) return hw_.memory_bandwidth * hw_.memory_efficiency;
  // The node's rate with every sharer's threads reading, split between them.
  return c.at({{"threads", double(threads_ * sharers_)}, {"bytes", std::max(bytes, 1.0)}}) *
         hw_.memory_efficiency / sharers_;
}

double DeviceTime::matmul(double tokens, double rows, double cols, double weight_bytes,
                          MatKind kind) const {
  if (tokens <= 0 || rows <= 0 || cols <= 0) return 0;
  const double flops = 2 * tokens * rows * cols;
  const auto& shapes = hw_.curves.shape_matmul;
  const auto own = shapes.empty() ? shapes.end()
                                  : shapes.find(shape_matmul_key(dtype_, kind, rows, cols));
  // (A one-token product, decode's, streams its weights: the stream probe's kind.)
  const double t =
      (tokens <= 1 ? stream_slowdown_ : slowdown_) *
      (own != shapes.end()
           ? flops / own->second.at({{"threads", double(threads_)}, {"tokens", tokens}})
       : matmul_ ? flops / matmul_->at({{"threads", double(threads_)},
                                        {"tokens", tokens},
                                        {"elements", rows * cols},
                                        {"rows", rows},
                                        {"cols", cols}})
                 : flops / lin_rate_);
  // No faster than reading the weights once (a curve measured with the node to itself
  // does not see the ranks that share its memory).
  return std::max(t, weight_bytes / bandwidth(weight_bytes));
}

double DeviceTime::attention(double triples, double d, double queries, double keys, double group,
                             double heads, double kv_bytes) const {
  if (triples <= 0) return 0;
  const auto& shapes = hw_.curves.shape_attention;
  const auto own = shapes.empty() ? shapes.end() : shapes.find(shape_attention_key(d, group));
  const Curve& c = own != shapes.end() ? own->second : hw_.curves.attention;
  // A call of more than one query at the keys of the devices running at once (see the
  // header); a decode's one-query calls are bounded by their reads instead (decode_step).
  auto rate = [&](double q, double k) {
    const double kk = q > 1 ? k * co_running_ : k;
    return c.empty() ? attn_rate_
                     : c.at({{"threads", double(threads_)},
                             {"queries", std::max(q, 1.0)},
                             {"keys", std::max(kk, 1.0)},
                             {"group", std::max(group, 1.0)},
                             {"heads", std::max(heads, 1.0)}});
  };
  double seconds = 4 * d * triples / rate(queries, keys);
  // A CPU call of more queries than the curve holds, its queries at the end of its keys
  // (a causal band, keys >= queries / 2, as calibrate times them: a whole prompt's
  // self-attention), runs as blocks of the curve's longest query count (at most 64
  // blocks), each at the keys its queries see: the last block's K and V may outgrow the
  // cache where the first block's fit, which the call's mean keys do not show.
  const auto axis = std::find(c.axes.begin(), c.axes.end(), "queries");
  if (hw_.threads > 0 && axis != c.axes.end() && keys >= queries / 2) {
    const double q_max = c.points[size_t(axis - c.axes.begin())].back();
    if (queries > q_max) {
      const double blocks = std::min(64.0, std::ceil(queries / q_max)), b = queries / blocks;
      const double before = keys - (queries + 1) / 2;  // keys before the first query
      seconds = 0;
      for (double i = 0; i < blocks; ++i) {
        const double k = before + i * b + (b + 1) / 2;
        seconds += 4 * d * triples * (b * k) / (queries * keys) / rate(b, k);
      }
    }
  }
  return std::max(attn_slowdown_ * seconds, kv_bytes / bandwidth(kv_bytes));
}

double DeviceTime::stream(double bytes) const { return bytes > 0 ? bytes / bandwidth(bytes) : 0; }

double DeviceTime::stream_own(double bytes) const {
  return bytes > 0 ? bytes / bandwidth(bytes * sharers_) : 0;
}

double DeviceTime::ops(double n) const {
  const Curve& c = hw_.curves.op_overhead;
  return c.empty() || n <= 0 ? 0 : slowdown_ * n * c.at({{"threads", double(threads_)}});
}

double DeviceTime::message(double bytes, const Link& link, bool inter) const {
  if (bytes <= 0) return 0;
  const Curve& c = inter ? hw_.curves.inter_message : hw_.curves.intra_message;
  if (c.empty()) return bytes / link.bandwidth + link.latency;
  return bytes / c.at({{"bytes", bytes}});
}

double DeviceTime::alltoall(double bytes, int n, const Link& link, bool inter) const {
  if (n <= 1 || bytes <= 0) return 0;
  const Curve& c = inter ? hw_.curves.inter_alltoall : hw_.curves.intra_alltoall;
  if (c.empty()) return bytes / link.bandwidth + (n - 1) * link.latency;
  // Measured among two ranks: each peer's share at that rate, the peers one after another.
  const double per_peer = bytes / (n - 1);
  return (n - 1) * per_peer / c.at({{"bytes", per_peer}});
}

double DeviceTime::side_by_side(std::vector<double> seconds) const {
  if (seconds.empty()) return 0;
  std::sort(seconds.begin(), seconds.end());
  if (turns_ <= 1) return seconds.back();
  // Each device's work in seconds on cores of its own; while k devices run, each thread
  // gets min(1, cores / (k x threads)) of a core.
  double t = 0, done = 0;
  const size_t n = seconds.size();
  for (size_t i = 0; i < n; ++i) {
    const double own = seconds[i] / turns_;
    const double share = std::min(1.0, double(hw_.threads) / (double(n - i) * threads_));
    t += (own - done) / share;
    done = own;
  }
  return t;
}

}  // namespace tandem::analysis
