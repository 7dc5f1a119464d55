// Times the BF16 products of training (bf16_matmul.hpp) against the f32 ones at the small
// preset's layer shapes: forward (y = x W^T), matmul_dx and matmul_dw, on 1 and 2 threads,
// plus the per-step repack of the weights (Bf16Matrix::pack). f32 and BF16 runs alternate
// (one of each per round; medians over --reps rounds after one warm-up), so that a busy
// machine slows both alike. GF/s = 2 * m * rows * cols / time, wall-clock and, in the
// "cpu" columns, from the process's CPU time divided by the threads (what the op would
// take with the cores to itself).
//   bf16_matmul_timing [--m 1024] [--reps 9] [--threads 1,2]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/kernels/bf16_matmul.hpp"
#include "tandem/kernels/ops.hpp"

using namespace tandem;
using namespace tandem::kernels;

namespace {

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

struct Sample {
  std::vector<double> wall, cpu;
  template <typename F>
  void run(F&& f) {
    const double c0 = cpu_seconds();
    const auto a = std::chrono::steady_clock::now();
    f();
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
    cpu.push_back(cpu_seconds() - c0);
  }
  static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
};

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
  int reps = 9;
  std::vector<int> threads = {1, 2};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--m" && i + 1 < argc) m = std::atoll(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) {
      threads.clear();
      for (char* p = argv[++i]; *p;) {
        threads.push_back(int(std::strtol(p, &p, 10)));
        if (*p == ',') ++p;
      }
    } else {
      std::fprintf(stderr, "usage: %s [--m N] [--reps N] [--threads 1,2]\n", argv[0]);
      return 2;
    }
  }
  std::printf("isa %s, bf16 path %s, m %lld tokens, medians of %d alternating rounds\n",
              detail::isa().name, bf16_products_fast() ? "AVX-512 BF16" : "portable",
              static_cast<long long>(m), reps);
  struct Shape {
    int64_t rows, cols;
    const char* what;
  };
  const Shape shapes[] = {{768, 768, "attn q/o (DxD)"},
                          {256, 768, "attn k/v (G*d x D)"},
                          {2048, 768, "ffn gate/up (FxD)"},
                          {768, 2048, "ffn down (DxF)"}};
  std::printf("GF/s = 2*m*rows*cols / time (wall: wall-clock; cpu: process CPU time / threads);"
              " pack: ms per repack of the matrix\n");
  std::printf("%-20s %5s %5s %3s | %6s %6s %6s | %6s %6s %6s | %5s %5s %5s | %6s %6s %6s | %6s\n",
              "shape", "rows", "cols", "thr", "fwd", "dx", "dw", "fwd", "dx", "dw", "fwd", "dx",
              "dw", "fwd", "dx", "dw", "pack");
  std::printf("%-20s %5s %5s %3s | %20s | %20s | %17s | %20s |\n", "", "", "", "",
              "f32 wall GF/s", "bf16 wall GF/s", "bf16/f32 (wall)", "bf16 cpu GF/s");
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
    const double g = 2.0 * double(m) * double(s.rows) * double(s.cols) * 1e-9;
    for (int nt : threads) {
      ThreadPool pool(nt);
      Bf16Matrix wb;
      wb.pack(w.data(), s.rows, s.cols, pool);
      auto f32_fwd = [&] { matmul(wv, x.data(), m, y.data(), pool); };
      auto f32_dx = [&] { matmul_dx(w.data(), s.rows, s.cols, dy.data(), m, dx.data(), false, pool); };
      auto f32_dw = [&] { matmul_dw(dy.data(), x.data(), m, s.rows, s.cols, dw.data(), pool); };
      auto b_fwd = [&] { bf16_matmul(wb, x.data(), m, y.data(), pool); };
      auto b_dx = [&] { bf16_matmul_dx(wb, dy.data(), m, dx.data(), false, pool); };
      auto b_dw = [&] { bf16_matmul_dw(dy.data(), x.data(), m, s.rows, s.cols, dw.data(), pool); };
      auto b_pack = [&] { wb.pack(w.data(), s.rows, s.cols, pool); };
      f32_fwd();  // warm-up
      f32_dx();
      f32_dw();
      b_fwd();
      b_dx();
      b_dw();
      Sample t[7];
      for (int r = 0; r < reps; ++r) {
        t[0].run(f32_fwd);
        t[3].run(b_fwd);
        t[1].run(f32_dx);
        t[4].run(b_dx);
        t[2].run(f32_dw);
        t[5].run(b_dw);
        t[6].run(b_pack);
      }
      double wall[6], cpu[6];
      for (int k = 0; k < 6; ++k) {
        wall[k] = g / Sample::median(t[k].wall);
        cpu[k] = g * nt / Sample::median(t[k].cpu);
      }
      std::printf("%-20s %5lld %5lld %3d | %6.1f %6.1f %6.1f | %6.1f %6.1f %6.1f | %5.2f %5.2f %5.2f"
                  " | %6.1f %6.1f %6.1f | %6.2f\n",
                  s.what, static_cast<long long>(s.rows), static_cast<long long>(s.cols), nt,
                  wall[0], wall[1], wall[2], wall[3], wall[4], wall[5], wall[3] / wall[0],
                  wall[4] / wall[1], wall[5] / wall[2], cpu[3], cpu[4], cpu[5],
                  Sample::median(t[6].wall) * 1e3);
      std::fflush(stdout);
    }
  }
  return 0;
}
