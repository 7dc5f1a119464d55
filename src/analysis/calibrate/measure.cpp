// Internal to calibrate: operands, timing and one attention call's rate (measure.hpp).
#include "analysis/measure.hpp"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

#include "tandem/core/quant_rows.hpp"

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

}  // namespace

int copies_for(double bytes) {
  return int(std::clamp(std::ceil(2 * last_cache_bytes() / std::max(bytes, 1.0)), 1.0, 256.0));
}

std::vector<double> thread_points(int T) {
  std::vector<double> v;
  for (int t = 1; t < T; t *= 2) v.push_back(t);
  v.push_back(T);
  return v;
}

namespace {
std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> v;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return v;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) v.push_back(c);
  return v;
}

bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}
}  // namespace

PinFirst::PinFirst(int n) {
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.empty() || sched_getaffinity(0, sizeof saved_, &saved_) != 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (long i = 0; i < std::clamp<long>(n, 1, long(cpus.size())); ++i) CPU_SET(cpus[size_t(i)], &set);
  pinned_ = sched_setaffinity(0, sizeof set, &set) == 0;
}

PinFirst::~PinFirst() {
  if (pinned_) sched_setaffinity(0, sizeof saved_, &saved_);
}

struct CoreProbe::State {
  std::vector<int> cpus;
  Weights w;
  std::vector<float> x, y;
  kernels::ThreadPool pool{1};  // no workers: the calls run on the probing thread
  std::vector<double> seen[3];  // every reading, per CoreWork
};

namespace {
constexpr int64_t kProbeTokens = 256, kProbeRows = 768, kProbeCols = 288;
}

CoreProbe::CoreProbe(int n) {
  const std::vector<int> cpus = allowed_cpus();
  if (n < 1 || size_t(n) > cpus.size()) return;
  s_ = std::make_unique<State>();
  s_->cpus.assign(cpus.begin(), cpus.begin() + n);
  s_->w = make_weights(DType::F16, kProbeRows, kProbeCols);
  s_->x = random_floats(size_t(kProbeTokens * kProbeCols), 3);
  s_->y.resize(size_t(kProbeTokens * kProbeRows));
}

CoreProbe::~CoreProbe() = default;

bool CoreProbe::active() const { return s_ != nullptr; }

std::vector<double> CoreProbe::rates(Work work, int rounds) {
  if (!s_) return {};
  cpu_set_t saved;
  const bool restore = sched_getaffinity(0, sizeof saved, &saved) == 0;
  std::vector<std::vector<double>> got(s_->cpus.size());
  bool pinned = true;
  for (int round = 0; round < std::max(rounds, 1) && pinned; ++round)
    for (size_t i = 0; i < s_->cpus.size() && pinned; ++i) {
      if (!(pinned = pin_to(s_->cpus[i]))) break;
      if (work == Work::Attention) {
        got[i].push_back(attention_rate(s_->pool, 8, 8, 64, 256, 1024, 0.004));
        continue;
      }
      const int64_t m = work == Work::Stream ? 1 : kProbeTokens;
      got[i].push_back(2.0 * double(m * kProbeRows * kProbeCols) / time_call([&](int k) {
        kernels::matmul(s_->w.views[size_t(k) % s_->w.views.size()], s_->x.data(), m, s_->y.data(),
                        s_->pool);
      }, 0.004));
    }
  std::vector<double> r;
  if (restore) sched_setaffinity(0, sizeof saved, &saved);
  if (!pinned) return r;  // a CPU this thread may not take: no reading
  for (auto& v : got) {
    std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
    r.push_back(v[v.size() / 2]);
    s_->seen[int(work)].push_back(r.back());
  }
  return r;
}

std::vector<double> CoreProbe::together(Work work, int rounds, int cores) {
  if (!s_) return {};
  const size_t n = cores > 0 ? std::min(size_t(cores), s_->cpus.size()) : s_->cpus.size();
  std::vector<std::vector<double>> got(n);
  std::atomic<bool> failed{false};
  for (int round = 0; round < std::max(rounds, 1) && !failed; ++round) {
    // Every core at once: one thread pinned to each, released together, each timing
    // the same call on its own output for the same span.
    std::atomic<size_t> ready{0};
    std::vector<std::thread> threads;
    for (size_t i = 0; i < n; ++i)
      threads.emplace_back([&, i] {
        kernels::ThreadPool pool{1};
        std::vector<float> y(s_->y.size());
        const bool ok = pin_to(s_->cpus[i]);
        if (!ok) failed = true;
        ready.fetch_add(1);
        while (ready.load() < n) std::this_thread::yield();
        if (failed) return;
        if (work == Work::Attention) {
          got[i].push_back(attention_rate(pool, 8, 8, 64, 256, 1024, 0.004));
          return;
        }
        // Each thread starts its rotation of the weight copies at its own place, so no
        // core reads a copy another has just brought into the shared cache.
        const int64_t m = work == Work::Stream ? 1 : kProbeTokens;
        const size_t copies = s_->w.views.size(), start = i * copies / n;
        got[i].push_back(2.0 * double(m * kProbeRows * kProbeCols) / time_call([&](int k) {
          kernels::matmul(s_->w.views[(start + size_t(k)) % copies], s_->x.data(), m, y.data(), pool);
        }, 0.004));
      });
    for (auto& t : threads) t.join();
  }
  std::vector<double> r;
  if (failed) return r;
  for (auto& v : got) {
    std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
    r.push_back(v[v.size() / 2]);
  }
  return r;
}

double CoreProbe::pace(Work work, int t) {
  // (One device's one-token products keep the alone rate, as the planner reads them:
  // device_time.cpp.)
  const std::vector<double> r = t > 1 && work != Work::Stream ? together(work, 1, t) : rates(work);
  if (r.empty()) return 1;
  return *std::min_element(r.begin(), r.begin() + std::clamp<long>(t, 1, long(r.size())));
}

double CoreProbe::uncontended(Work work) const {
  if (!s_ || s_->seen[int(work)].empty()) return 1;
  const std::vector<double>& seen = s_->seen[int(work)];
  const double top = *std::max_element(seen.begin(), seen.end());
  std::vector<double> v;
  for (double x : seen)
    if (x >= 0.85 * top) v.push_back(x);
  std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
  return v[v.size() / 2];
}

std::string core_rates_line(CoreProbe& probe) {
  const std::vector<double> p = probe.rates(CoreWork::Product, 3), a = probe.rates(CoreWork::Attention, 3),
                            s = probe.rates(CoreWork::Stream, 3);
  if (p.empty() || a.empty() || s.empty()) return "cores: not probed one by one (more threads than CPUs)";
  auto list = [](const std::vector<double>& r) {
    std::string v;
    for (double x : r) v += fmt::format("{}{:.1f}", v.empty() ? "" : ", ", x / 1e9);
    return v;
  };
  const std::vector<double> bp = probe.together(CoreWork::Product, 3), ba = probe.together(CoreWork::Attention, 3),
                            bs = probe.together(CoreWork::Stream, 3);
  return fmt::format(
      "cores, one thread each, GFLOP/s: f16 product {}; attention {}; one-token product {}; "
      "with every core busy: {}; {}; {}",
      list(p), list(a), list(s), list(bp), list(ba), list(bs));
}

void hold_at(Curve& c, const CoreRates& r, CoreWork kind) {
  size_t axis = c.axes.size();
  for (size_t i = 0; i < c.axes.size(); ++i)
    if (c.axes[i] == "tokens") axis = i;
  if (kind == CoreWork::Attention || axis == c.axes.size()) {
    c.scale(r.of(kind));
    return;
  }
  // The flat index's stride of the tokens axis, and its length.
  size_t stride = 1;
  for (size_t i = axis + 1; i < c.axes.size(); ++i) stride *= c.points[i].size();
  const size_t n = c.points[axis].size();
  for (size_t i = 0; i < c.values.size(); ++i)
    c.values[i] *= c.points[axis][(i / stride) % n] <= 1 ? r.stream : r.product;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

Buffer::Buffer(size_t n) : p(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64)), &std::free) {
  if (!p) fail(ErrorKind::Resource, "calibrate: cannot allocate {} bytes", n);
}

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


double attention_rate(kernels::ThreadPool& pool, int H, int G, int d, int64_t nq, double keys,
                      double min_seconds) {
  // Causal band: n_kv keys, the queries at the last nq positions, seeing on average
  // n_kv - (nq - 1) / 2 keys; else a block of keys before every query.
  const bool band = keys >= double(nq) / 2;
  const int64_t n_kv = std::max<int64_t>(1, std::llround(band ? keys + double(nq - 1) / 2 : keys));
  const size_t kv_floats = size_t(n_kv) * size_t(G) * size_t(d);
  const auto q = random_floats(size_t(nq) * size_t(H) * size_t(d), 5);
  std::vector<float> out(q.size());
  // Each copy holds K, then V: views into one buffer kept across calls (written once,
  // grown when a call needs more), so that a grid of calls does not fault in new pages
  // for every point.
  static std::vector<float> store;
  const size_t n_copies = size_t(copies_for(double(kv_floats) * 4 * 2));
  if (store.size() < n_copies * 2 * kv_floats) {
    const size_t old = store.size();
    store.resize(n_copies * 2 * kv_floats);
    uint32_t x = 2463534242u + uint32_t(old);
    for (size_t i = old; i < store.size(); ++i) {
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      store[i] = float(int32_t(x >> 8) - (1 << 23)) / float(1 << 23);  // in [-1, 1)
    }
  }
  std::vector<float*> kv(n_copies);
  for (size_t i = 0; i < n_copies; ++i) kv[i] = store.data() + i * 2 * kv_floats;
  std::vector<int32_t> kv_pos(static_cast<size_t>(n_kv)), q_pos(static_cast<size_t>(nq));
  for (int64_t j = 0; j < n_kv; ++j) kv_pos[size_t(j)] = int32_t(j);
  for (int64_t j = 0; j < nq; ++j) q_pos[size_t(j)] = int32_t(band ? n_kv - nq + j : n_kv + j);
  double visible = 0;
  for (int64_t j = 0; j < nq; ++j) visible += std::min(double(n_kv), double(q_pos[size_t(j)]) + 1);
  // Pages of 256 keys, as the runtime's cache holds them (kDefaultKvPage).
  const int64_t T = 256;
  std::vector<std::vector<KvPage>> pages(kv.size());
  for (size_t i = 0; i < kv.size(); ++i)
    for (int64_t p0 = 0; p0 < n_kv; p0 += T)
      pages[i].push_back({kv[i] + p0 * G * d, kv[i] + kv_floats + p0 * G * d, kv_pos.data() + p0});
  const double s = time_call([&](int i) {
    kernels::AttentionArgs a;
    a.n_q = nq;
    a.q = q.data();
    a.q_pos = q_pos.data();
    a.n_kv = n_kv;
    a.k = kv[size_t(i) % kv.size()];
    a.v = a.k + kv_floats;
    a.kv_pos = kv_pos.data();
    a.kv_stride = int64_t(G) * d;
    a.H = H, a.G = G, a.d = d;
    a.scale = 1.0f / std::sqrt(float(d));
    a.out = out.data();
    a.pages = {T, pages[size_t(i) % pages.size()].data(), DType::F32, size_t(G * d) * 4};
    kernels::attention(a, pool);
  }, min_seconds);
  return 4.0 * d * H * visible / s;
}

}  // namespace tandem::analysis
