// Times the dense f32 products of training at the small preset's shapes: the forward
// kernels::matmul on F32 weights, matmul_dx and matmul_dw, on 1 and 2 threads, and the
// output head fused with cross-entropy. Prints GFLOP/s = 2 * m * rows * cols / time
// (median of --reps runs after one warm-up run), from wall-clock time and, in the "cpu"
// columns, from the process's CPU time divided by the threads (what the op would take
// with the cores to itself, spin-waits included: on a shared machine the wall-clock
// figures drop when other processes take the cores, these much less).
//   matmul_backward_timing [--m 1024] [--reps 7] [--threads 1,2] [--xent]
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/kernels/ops.hpp"

using namespace tandem;
using namespace tandem::kernels;

namespace {

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Medians of the wall-clock and the process CPU time of f over reps runs.
struct Timing {
  double wall, cpu;
};
template <typename F>
Timing median_seconds(int reps, F&& f) {
  f();  // warm-up: scratch buffers, pages, caches
  std::vector<double> t, c;
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_seconds();
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
    c.push_back(cpu_seconds() - c0);
  }
  std::sort(t.begin(), t.end());
  std::sort(c.begin(), c.end());
  return {t[t.size() / 2], c[c.size() / 2]};
}

std::vector<float> rand_vec(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t m = 1024;
  int reps = 7;
  std::vector<int> threads = {1, 2};
  bool xent = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--m" && i + 1 < argc) m = std::atoll(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--xent") xent = true;
    else if (a == "--threads" && i + 1 < argc) {
      threads.clear();
      for (char* p = argv[++i]; *p;) {
        threads.push_back(int(std::strtol(p, &p, 10)));
        if (*p == ',') ++p;
      }
    } else {
      std::fprintf(stderr, "usage: %s [--m N] [--reps N] [--threads 1,2] [--xent]\n", argv[0]);
      return 2;
    }
  }
  std::printf("isa %s, m %lld tokens, median of %d runs\n", detail::isa().name,
              static_cast<long long>(m), reps);
  struct Shape {
    int64_t rows, cols;
    const char* what;
  };
  const Shape shapes[] = {{768, 768, "attn q/o (DxD)"},
                          {256, 768, "attn k/v (G*d x D)"},
                          {2048, 768, "ffn gate/up (FxD)"},
                          {768, 2048, "ffn down (DxF)"},
                          {32000, 768, "head (VxD)"}};
  std::printf("GF/s = 2*m*rows*cols / time; wall: wall-clock, cpu: process CPU time / threads\n");
  std::printf("%-20s %6s %6s %3s | %7s %7s %7s | %7s %7s %7s\n", "shape", "rows", "cols", "thr",
              "fwd", "dx", "dw", "fwd", "dx", "dw");
  std::printf("%-20s %6s %6s %3s | %23s | %23s\n", "", "", "", "", "wall GF/s", "cpu GF/s");
  for (const Shape& s : shapes) {
    const std::vector<float> w = rand_vec(size_t(s.rows * s.cols), 0.05f, 1);
    const std::vector<float> x = rand_vec(size_t(m * s.cols), 1.0f, 2);
    const std::vector<float> dy = rand_vec(size_t(m * s.rows), 1.0f, 3);
    std::vector<float> y(size_t(m * s.rows)), dx(size_t(m * s.cols)), dw(size_t(s.rows * s.cols));
    MatrixView wv;
    wv.type = DType::F32;
    wv.rows = s.rows;
    wv.cols = s.cols;
    wv.data = w.data();
    wv.row_stride = size_t(s.cols) * sizeof(float);
    const double flop = 2.0 * double(m) * double(s.rows) * double(s.cols);
    for (int nt : threads) {
      ThreadPool pool(nt);
      const Timing tf = median_seconds(reps, [&] { matmul(wv, x.data(), m, y.data(), pool); });
      const Timing tx = median_seconds(
          reps, [&] { matmul_dx(w.data(), s.rows, s.cols, dy.data(), m, dx.data(), false, pool); });
      const Timing tw = median_seconds(
          reps, [&] { matmul_dw(dy.data(), x.data(), m, s.rows, s.cols, dw.data(), pool); });
      const double g = flop * 1e-9;
      std::printf("%-20s %6lld %6lld %3d | %7.1f %7.1f %7.1f | %7.1f %7.1f %7.1f\n", s.what,
                  static_cast<long long>(s.rows), static_cast<long long>(s.cols), nt,
                  g / tf.wall, g / tx.wall, g / tw.wall, g * nt / tf.cpu, g * nt / tx.cpu,
                  g * nt / tw.cpu);
      std::fflush(stdout);
    }
  }
  if (xent) {
    const int64_t V = 32000, D = 768;
    const std::vector<float> w = rand_vec(size_t(V * D), 0.05f, 4);
    const std::vector<float> x = rand_vec(size_t(m * D), 1.0f, 5);
    std::vector<int32_t> target(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) target[size_t(i)] = int32_t((i * 7919) % V);
    std::vector<float> dx(size_t(m * D)), dw(size_t(V * D));
    // Three products (logits, dx, dw) of 2 * m * V * D each.
    const double flop = 3 * 2.0 * double(m) * double(V) * double(D);
    std::printf("\ncross_entropy V %lld D %lld: GF/s of its 3 products (loss only: 1)\n",
                static_cast<long long>(V), static_cast<long long>(D));
    std::printf("%6s %3s %10s %10s %10s %12s\n", "block", "thr", "wall GF/s", "cpu GF/s",
                "wall ms", "loss-only ms");
    for (int64_t bt : {int64_t(64), int64_t(256)})
      for (int nt : threads) {
        ThreadPool pool(nt);
        CrossEntropyArgs a;
        a.x = x.data();
        a.w = w.data();
        a.target = target.data();
        a.m = m;
        a.D = D;
        a.V = V;
        a.grad_scale = 1.0f / float(m);
        a.dx = dx.data();
        a.dw = dw.data();
        a.block_tokens = bt;
        const Timing t = median_seconds(std::max(reps / 2, 3), [&] { cross_entropy(a, pool); });
        CrossEntropyArgs lo = a;
        lo.dx = nullptr;
        lo.dw = nullptr;
        const Timing tl = median_seconds(std::max(reps / 2, 3), [&] { cross_entropy(lo, pool); });
        std::printf("%6lld %3d %10.1f %10.1f %10.1f %12.1f\n", static_cast<long long>(bt), nt,
                    flop / t.wall * 1e-9, flop * nt / t.cpu * 1e-9, t.wall * 1e3, tl.wall * 1e3);
        std::fflush(stdout);
      }
  }
  return 0;
}
