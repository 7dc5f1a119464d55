// tandem calibrate: the runtime's cost of building a forward step's graph (once per step
// shape; replayed after), measured on synthetic models of the tiny preset's widths.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "analysis/step_costs.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/model/synth.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/weight_layout.hpp"

namespace tandem::analysis {

FirstStep measure_first_step(const std::string& model_path, int threads) {
  const auto model = load_model(model_path);
  kernels::ThreadPool pool(threads);
  Engine e(*model, pool);
  KVCache cache = e.make_cache(8);
  const int32_t id[1] = {1};
  int32_t pos[1] = {0};
  FirstStep r;
  const Stopwatch first;
  e.forward(cache, id, pos, 0, nullptr);
  r.first = first.seconds();
  pos[0] = 1;
  const Stopwatch second;
  e.forward(cache, id, pos, 0, nullptr);
  r.replay = second.seconds();
  return r;
}

namespace {
// The first step's excess over a replay in fresh processes (`tandem step-probe`, so
// nothing the kernels set up once per process is warm): the median of 3.
double build_seconds(const std::string& path, int threads) {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) fail(ErrorKind::Internal, "calibrate: cannot find its own executable");
  self[n] = '\0';
  std::vector<double> t;
  for (int rep = 0; rep < 3; ++rep) {
    const std::string cmd = fmt::format("'{}' step-probe -m '{}' -t {} 2>&1", self, path, threads);
    std::FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) fail(ErrorKind::Internal, "calibrate: cannot run step-probe");
    char buf[256] = {0};
    std::string out;
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    const int rc = ::pclose(p);
    double first = 0, replay = 0;
    if (rc != 0 || std::sscanf(out.c_str(), "%lf %lf", &first, &replay) != 2)
      fail(ErrorKind::Internal, "calibrate: graph build not measured: step-probe said: {}", out.substr(0, 300));
    t.push_back(std::max(first - replay, 1e-7));
  }
  std::nth_element(t.begin(), t.begin() + 1, t.end());
  return t[1];
}
}  // namespace

Curve graph_build_curve(const std::vector<double>& threads) {
  const std::vector<double> layers = {2, 8};
  Curve c = Curve::grid({"threads", "layers"}, {threads, layers});
  const std::string dir = std::filesystem::temp_directory_path().string();
  for (size_t l = 0; l < layers.size(); ++l) {
    SynthSpec spec = synth_preset("tiny");
    spec.n_layer = int64_t(layers[l]);
    spec.n_vocab = 1000;
    spec.vocab_path.clear();
    spec.type = DType::F32;
    const std::string path = fmt::format("{}/tandem-calibrate-{}-{}.gguf", dir, ::getpid(), l);
    write_synthetic_model(spec, path);
    for (size_t t = 0; t < threads.size(); ++t) {
      try {
        c.values[c.index({t, l})] = build_seconds(path, int(threads[t]));
      } catch (...) {
        std::filesystem::remove(path);
        throw;
      }
    }
    std::filesystem::remove(path);
  }
  return c;
}

}  // namespace tandem::analysis

namespace tandem::analysis {

Curve file_fault_curve() {
  // A file of 64 MiB written (so it sits in the page cache) and mapped; then one byte of
  // every 16th page read at random: seconds per first touch of a page of a mapping whose
  // file is cached, as a sparse read (an embedding row here and there) pays it.
  const std::string path = fmt::format("{}/tandem-calibrate-{}.map",
                                       std::filesystem::temp_directory_path().string(), ::getpid());
  const size_t bytes = size_t(64) << 20, page = size_t(std::max(::sysconf(_SC_PAGESIZE), 4096L));
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) fail(ErrorKind::Internal, "calibrate: cannot write {} (page-fault measurement)", path);
    std::vector<char> chunk(size_t(1) << 20, 1);
    for (size_t off = 0; off < bytes; off += chunk.size()) std::fwrite(chunk.data(), 1, chunk.size(), f);
    std::fclose(f);
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  void* p = fd >= 0 ? ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  if (fd >= 0) ::close(fd);
  std::filesystem::remove(path);
  if (p == MAP_FAILED) fail(ErrorKind::Internal, "calibrate: cannot map a file (page-fault measurement)");
  const auto* base = static_cast<const volatile char*>(p);
  const size_t n_pages = bytes / page, stride = 16;
  std::vector<size_t> order;
  for (size_t i = 0; i < n_pages; i += stride) order.push_back(i);
  uint64_t x = 88172645463325252ull;
  for (size_t i = order.size(); i > 1; --i) {  // xorshift shuffle
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::swap(order[i - 1], order[size_t(x % i)]);
  }
  int sum = 0;
  const Stopwatch sw;
  for (const size_t i : order) sum += base[i * page];
  const double per_fault = sw.seconds() / double(order.size());
  ::munmap(p, bytes);
  if (sum == 42) std::fprintf(stderr, " ");  // keeps the reads
  Curve c = Curve::grid({"threads"}, {{1}});
  c.values[0] = std::max(per_fault, 1e-9);
  return c;
}

}  // namespace tandem::analysis
