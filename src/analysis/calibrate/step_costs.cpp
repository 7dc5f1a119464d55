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

namespace {
// Seconds of the first 1-token step of a fresh engine (graph built) less those of the
// second (replayed): the median of `reps` engines.
double build_seconds(const std::string& path, int threads, int reps) {
  const auto model = load_model(path);
  kernels::ThreadPool pool(threads);
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    Engine e(*model, pool);
    KVCache cache = e.make_cache(8);
    const int32_t id[1] = {1};
    int32_t pos[1] = {0};
    const Stopwatch first;
    e.forward(cache, id, pos, 0, nullptr);
    const double built = first.seconds();
    pos[0] = 1;
    const Stopwatch second;
    e.forward(cache, id, pos, 0, nullptr);
    t.push_back(std::max(built - second.seconds(), 1e-7));
  }
  std::nth_element(t.begin(), t.begin() + long(t.size() / 2), t.end());
  return t[t.size() / 2];
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
        c.values[c.index({t, l})] = build_seconds(path, int(threads[t]), 5);
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
  // file is cached (fault-around maps neighbours too: what a sparse read pays).
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
