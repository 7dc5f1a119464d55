// Roofline measurement: stream read bandwidth and FMA peak, one vector width per CPU
// (AVX-512, AVX2 or scalar), each helper compiled for its instruction set with a target
// attribute and chosen at run time.
#include "tandem/analysis/roofline.hpp"

#include <sys/mman.h>

#include <immintrin.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tandem/core/error.hpp"
#include "tandem/core/text_file.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/kernels/thread_pool.hpp"

namespace tandem::analysis {
namespace {

// Independent FMA chains per thread: enough to cover 4-cycle latency at two FMAs per
// cycle with room to spare.
constexpr int kChains = 12;
constexpr double kFmaMul = 0.99999, kFmaAdd = 1e-6;  // keeps every chain finite

enum class Isa { Avx512, Avx2, Scalar };

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
  return Isa::Scalar;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512f";
    case Isa::Avx2: return "avx2";
    case Isa::Scalar: break;
  }
  return "scalar";
}

// Horizontal sum of 16 lanes (through memory: GCC 12's _mm512_reduce_add_ps warns).
__attribute__((target("avx512f"))) float hsum512(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float s = 0;
  for (float x : lanes) s += x;
  return s;
}

// ---- stream read: sum n floats (p 64-byte aligned, n a multiple of 64) ----

__attribute__((target("avx512f"))) float sum_avx512(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  return hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

__attribute__((target("avx2"))) float sum_avx2(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  float s = 0;
  for (float v : lanes) s += v;
  return s;
}

float sum_scalar(const float* p, size_t n) {
  float a[8] = {};
  for (size_t i = 0; i < n; i += 8)
    for (int k = 0; k < 8; ++k) a[k] += p[i + size_t(k)];
  float s = 0;
  for (float v : a) s += v;
  return s;
}

float sum_floats(Isa isa, const float* p, size_t n) {
  switch (isa) {
    case Isa::Avx512: return sum_avx512(p, n);
    case Isa::Avx2: return sum_avx2(p, n);
    case Isa::Scalar: break;
  }
  return sum_scalar(p, n);
}

// ---- FMA peak: kChains register-resident chains, `iters` rounds ----

__attribute__((target("avx512f"))) float fma_avx512(int64_t iters) {
  const __m512 m = _mm512_set1_ps(float(kFmaMul)), b = _mm512_set1_ps(float(kFmaAdd));
  __m512 a0 = _mm512_set1_ps(0.1f), a1 = _mm512_set1_ps(0.2f), a2 = _mm512_set1_ps(0.3f),
         a3 = _mm512_set1_ps(0.4f), a4 = _mm512_set1_ps(0.5f), a5 = _mm512_set1_ps(0.6f),
         a6 = _mm512_set1_ps(0.7f), a7 = _mm512_set1_ps(0.8f), a8 = _mm512_set1_ps(0.9f),
         a9 = _mm512_set1_ps(1.0f), a10 = _mm512_set1_ps(1.1f), a11 = _mm512_set1_ps(1.2f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm512_fmadd_ps(a0, m, b);
    a1 = _mm512_fmadd_ps(a1, m, b);
    a2 = _mm512_fmadd_ps(a2, m, b);
    a3 = _mm512_fmadd_ps(a3, m, b);
    a4 = _mm512_fmadd_ps(a4, m, b);
    a5 = _mm512_fmadd_ps(a5, m, b);
    a6 = _mm512_fmadd_ps(a6, m, b);
    a7 = _mm512_fmadd_ps(a7, m, b);
    a8 = _mm512_fmadd_ps(a8, m, b);
    a9 = _mm512_fmadd_ps(a9, m, b);
    a10 = _mm512_fmadd_ps(a10, m, b);
    a11 = _mm512_fmadd_ps(a11, m, b);
  }
  const __m512 s = _mm512_add_ps(
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                    _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))),
      _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  return hsum512(s);
}

__attribute__((target("avx2,fma"))) float fma_avx2(int64_t iters) {
  const __m256 m = _mm256_set1_ps(float(kFmaMul)), b = _mm256_set1_ps(float(kFmaAdd));
  __m256 a0 = _mm256_set1_ps(0.1f), a1 = _mm256_set1_ps(0.2f), a2 = _mm256_set1_ps(0.3f),
         a3 = _mm256_set1_ps(0.4f), a4 = _mm256_set1_ps(0.5f), a5 = _mm256_set1_ps(0.6f),
         a6 = _mm256_set1_ps(0.7f), a7 = _mm256_set1_ps(0.8f), a8 = _mm256_set1_ps(0.9f),
         a9 = _mm256_set1_ps(1.0f), a10 = _mm256_set1_ps(1.1f), a11 = _mm256_set1_ps(1.2f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm256_fmadd_ps(a0, m, b);
    a1 = _mm256_fmadd_ps(a1, m, b);
    a2 = _mm256_fmadd_ps(a2, m, b);
    a3 = _mm256_fmadd_ps(a3, m, b);
    a4 = _mm256_fmadd_ps(a4, m, b);
    a5 = _mm256_fmadd_ps(a5, m, b);
    a6 = _mm256_fmadd_ps(a6, m, b);
    a7 = _mm256_fmadd_ps(a7, m, b);
    a8 = _mm256_fmadd_ps(a8, m, b);
    a9 = _mm256_fmadd_ps(a9, m, b);
    a10 = _mm256_fmadd_ps(a10, m, b);
    a11 = _mm256_fmadd_ps(a11, m, b);
  }
  const __m256 s = _mm256_add_ps(
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                    _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))),
      _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float r = 0;
  for (float v : lanes) r += v;
  return r;
}

float fma_scalar(int64_t iters) {
  float a[kChains];
  for (int k = 0; k < kChains; ++k) a[k] = 0.1f * float(k + 1);
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) a[k] = a[k] * float(kFmaMul) + float(kFmaAdd);
  float s = 0;
  for (float v : a) s += v;
  return s;
}

int lanes_of(Isa isa) { return isa == Isa::Avx512 ? 16 : isa == Isa::Avx2 ? 8 : 1; }

float fma_chains(Isa isa, int64_t iters) {
  switch (isa) {
    case Isa::Avx512: return fma_avx512(iters);
    case Isa::Avx2: return fma_avx2(iters);
    case Isa::Scalar: break;
  }
  return fma_scalar(iters);
}

volatile float g_sink;  // keeps the measured loops from being optimized away

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

double measure_bandwidth(Isa isa, kernels::ThreadPool& pool, size_t bytes, int passes) {
  const size_t n = bytes / sizeof(float);
  // 2 MiB aligned and advised into huge pages, as the packed weights are (model.cpp): the
  // bound is what the best-placed weights could be read at.
  constexpr size_t kHuge = size_t(2) << 20;
  std::unique_ptr<float, FreeDeleter> buf(
      static_cast<float*>(std::aligned_alloc(kHuge, (bytes + kHuge - 1) / kHuge * kHuge)));
  if (!buf) fail(ErrorKind::Resource, "roofline: cannot allocate a {} MiB buffer", bytes >> 20);
  ::madvise(buf.get(), (bytes + kHuge - 1) / kHuge * kHuge, MADV_HUGEPAGE);
  float* p = buf.get();
  const int64_t blocks = int64_t(n / 64);  // 64-float blocks, split across threads
  std::vector<float> sums(size_t(pool.size()), 0.0f);
  // First touch on the threads that read, so pages are mapped before timing.
  pool.run([&](int tid, int nth) {
    const auto [b, e] = kernels::split_range(blocks, tid, nth);
    for (size_t i = size_t(b) * 64; i < size_t(e) * 64; ++i) p[i] = float(i & 7) * 0.125f;
  });
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    const Stopwatch sw;
    pool.run([&](int tid, int nth) {
      const auto [b, e] = kernels::split_range(blocks, tid, nth);
      sums[size_t(tid)] = sum_floats(isa, p + b * 64, size_t(e - b) * 64);
    });
    const double s = sw.seconds();
    if (s > 0) best = std::max(best, double(blocks) * 64 * sizeof(float) / s);
  }
  float total = 0;
  for (float v : sums) total += v;
  g_sink = total;
  return best;
}

double measure_fma(Isa isa, kernels::ThreadPool& pool, int passes) {
  const int64_t iters = isa == Isa::Scalar ? int64_t(1) << 21 : int64_t(1) << 22;
  std::vector<float> sums(size_t(pool.size()), 0.0f);
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    const Stopwatch sw;
    pool.run([&](int tid, int) { sums[size_t(tid)] = fma_chains(isa, iters); });
    const double s = sw.seconds();
    const double flops = double(iters) * kChains * lanes_of(isa) * 2.0 * pool.size();
    if (s > 0) best = std::max(best, flops / s);
  }
  float total = 0;
  for (float v : sums) total += v;
  g_sink = total;
  return best;
}

double positive_number(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_number() || !(j[key].get<double>() > 0))
    bad_input("{}: field '{}' must be a positive number", where, key);
  return j[key].get<double>();
}

}  // namespace

std::string roofline_isa() { return isa_name(detect_isa()); }

Roofline measure_roofline(const RooflineOptions& opts) {
  if (opts.threads < 1) bad_input("roofline: threads must be >= 1, got {}", opts.threads);
  if (opts.buffer_bytes < (size_t(1) << 20))
    bad_input("roofline: buffer must be at least 1 MiB, got {} bytes", opts.buffer_bytes);
  const Isa isa = detect_isa();
  kernels::ThreadPool pool(opts.threads);
  Roofline r;
  r.threads = opts.threads;
  r.isa = isa_name(isa);
  r.buffer_bytes = opts.buffer_bytes / 256 * 256;
  const int passes = std::max(1, opts.passes);
  r.read_bandwidth = measure_bandwidth(isa, pool, r.buffer_bytes, passes);
  r.fma_peak = measure_fma(isa, pool, passes);
  return r;
}

std::string default_roofline_path() {
  if (const char* e = std::getenv("TANDEM_ROOFLINE_FILE"); e && *e) return e;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    return std::string(x) + "/tandem/roofline.json";
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::string(h) + "/.cache/tandem/roofline.json";
  return ".tandem-roofline.json";
}

nlohmann::json roofline_to_json(const Roofline& r) {
  return {{"threads", r.threads},
          {"read_bandwidth", r.read_bandwidth},
          {"fma_peak", r.fma_peak},
          {"isa", r.isa},
          {"buffer_bytes", r.buffer_bytes}};
}

Roofline roofline_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) bad_input("{}: an entry must be a JSON object", where);
  Roofline r;
  if (!j.contains("threads") || !j["threads"].is_number_integer() || j["threads"].get<int>() < 1)
    bad_input("{}: field 'threads' must be an integer >= 1", where);
  r.threads = j["threads"].get<int>();
  r.read_bandwidth = positive_number(j, "read_bandwidth", where);
  r.fma_peak = positive_number(j, "fma_peak", where);
  if (j.contains("isa") && j["isa"].is_string()) r.isa = j["isa"].get<std::string>();
  if (j.contains("buffer_bytes") && j["buffer_bytes"].is_number_unsigned())
    r.buffer_bytes = j["buffer_bytes"].get<size_t>();
  return r;
}

std::vector<Roofline> load_rooflines(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  const auto j = nlohmann::json::parse(read_file_bounded(path, "", kMaxJsonFileBytes), nullptr, false);
  if (j.is_discarded()) bad_input("{}: not valid JSON", path);
  if (!j.is_object() || !j.contains("entries") || !j["entries"].is_array())
    bad_input("{}: expected an object with an 'entries' array", path);
  std::vector<Roofline> out;
  for (size_t i = 0; i < j["entries"].size(); ++i)
    out.push_back(roofline_from_json(j["entries"][i], fmt::format("{}: entries[{}]", path, i)));
  return out;
}

std::optional<Roofline> find_roofline(const std::vector<Roofline>& entries, int threads) {
  for (const auto& r : entries)
    if (r.threads == threads) return r;
  return std::nullopt;
}

void save_roofline(const std::string& path, const Roofline& r) {
  auto entries = load_rooflines(path);
  std::erase_if(entries, [&](const Roofline& e) { return e.threads == r.threads; });
  entries.push_back(r);
  std::sort(entries.begin(), entries.end(),
            [](const Roofline& a, const Roofline& b) { return a.threads < b.threads; });
  nlohmann::json j{{"version", 1}, {"entries", nlohmann::json::array()}};
  for (const auto& e : entries) j["entries"].push_back(roofline_to_json(e));
  const std::filesystem::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) bad_input("{}: cannot write: {}", tmp, std::strerror(errno));
    out << j.dump(2) << "\n";
    if (!out) bad_input("{}: write failed", tmp);
  }
  std::filesystem::rename(tmp, p, ec);
  if (ec) bad_input("{}: cannot write: {}", path, ec.message());
}

}  // namespace tandem::analysis
