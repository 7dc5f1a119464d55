// Causal attention forward (kernels::attention) against its backward
// (kernels::attention_backward) on the small preset's heads (H = 12, G = 4, d = 64), for
// each sequence length n given (default 1024 4096) and 1 and 2 threads: the best of
// --reps runs (after one warm-up) of each, and GFLOP/s counting the visible (query, key)
// pairs only: forward 4*d per pair and head (QK^T and PV), backward 10*d (QK^T, dO V^T,
// P^T dO, dS^T Q, dS K: 2.5x the forward). The backward's time includes computing
// delta = rowsum(dout * out) (delta not passed). The cpu columns are the least process
// CPU time of a run (all threads, their waits included): on a shared machine the one
// thread's CPU time is steadier than its wall-clock time.
//   build/bin/attention_backward_timing [--reps R] [--threads T ...] [n ...]
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/kernels/ops.hpp"

namespace tk = tandem::kernels;

namespace {

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

double cpu_now() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// The least wall-clock and the least process CPU time of reps runs of f.
struct Best {
  double wall = 1e30, cpu = 1e30;
};
template <typename F>
Best best_of(int reps, F&& f) {
  f();  // warm-up (scratch buffers, pages)
  Best b;
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_now();
    const auto t0 = std::chrono::steady_clock::now();
    f();
    b.wall = std::min(b.wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    b.cpu = std::min(b.cpu, cpu_now() - c0);
  }
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  std::vector<int> threads, ns;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      threads.push_back(std::atoi(argv[++i]));
    else
      ns.push_back(std::atoi(argv[i]));
  }
  if (ns.empty()) ns = {1024, 4096};
  if (threads.empty()) threads = {1, 2};
  const int H = 12, G = 4, d = 64;
  std::printf("isa %s, H %d, G %d, d %d, causal, best of %d; load average %s\n",
              tk::detail::isa().name, H, G, d, reps, loadavg().c_str());
  std::printf("%6s %7s %9s %12s %9s %12s %8s %11s %11s\n", "n", "threads", "fwd ms",
              "fwd GFLOP/s", "bwd ms", "bwd GFLOP/s", "bwd/fwd", "fwd cpu ms", "bwd cpu ms");
  for (int n : ns) {
    const size_t nq = size_t(n) * H * d, nkv = size_t(n) * G * d;
    const std::vector<float> q = random_vec(nq, 1), k = random_vec(nkv, 2), v = random_vec(nkv, 3),
                             dout = random_vec(nq, 4);
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) pos[size_t(i)] = i;
    std::vector<float> out(nq), lse(size_t(n) * H), dq(nq), dk(nkv), dv(nkv);
    tk::AttentionArgs a;
    a.q = q.data();
    a.q_pos = pos.data();
    a.n_q = n;
    a.k = k.data();
    a.v = v.data();
    a.kv_pos = pos.data();
    a.n_kv = n;
    a.kv_stride = int64_t(G) * d;
    a.H = H;
    a.G = G;
    a.d = d;
    a.scale = 1.0f / std::sqrt(float(d));
    a.causal = true;
    a.out = out.data();
    a.lse = lse.data();
    tk::AttentionBackwardArgs b;
    b.fwd = a;
    b.dout = dout.data();
    b.dq = dq.data();
    b.dk = dk.data();
    b.dv = dv.data();
    const double pairs = double(n) * (n + 1) / 2;
    const double fwd_flop = 4.0 * d * H * pairs, bwd_flop = 10.0 * d * H * pairs;
    for (int t : threads) {
      tk::ThreadPool pool(t);
      const Best f = best_of(reps, [&] { tk::attention(a, pool); });
      const Best g = best_of(reps, [&] { tk::attention_backward(b, pool); });
      std::printf("%6d %7d %9.2f %12.1f %9.2f %12.1f %8.2f %11.2f %11.2f\n", n, t, f.wall * 1e3,
                  fwd_flop / f.wall * 1e-9, g.wall * 1e3, bwd_flop / g.wall * 1e-9,
                  g.wall / f.wall, f.cpu * 1e3, g.cpu * 1e3);
      std::fflush(stdout);
    }
  }
  std::printf("load average after: %s\n", loadavg().c_str());
  return 0;
}
