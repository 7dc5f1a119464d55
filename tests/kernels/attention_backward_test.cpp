// Backward of softmax attention (backward.hpp): the reference against central finite
// differences of a float64 forward, the split property ring attention relies on (calls
// over disjoint key sets, with the whole attention's out and lse, add up to one call
// over every key; queries split too), and the optimized kernel of every instruction set
// against the reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "attention_problem.hpp"
#include "kernels/attention_backward.hpp"
#include "tandem/core/error.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/kernels/backward_reference.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem::kernels {
namespace {

using test::make_problem;
using test::Problem;
using test::random_vec;

// A problem with what the backward reads: the forward's out and lse (over every key),
// dout, and the gradients' starting values (added to).
struct Bwd {
  Problem p;
  std::vector<float> out, lse, dout, delta;
  std::vector<float> dq, dk, dv;  // starting values
};

Bwd make_bwd(std::mt19937& rng, const Problem& p, bool zero_start) {
  Bwd b{p, {}, {}, {}, {}, {}, {}, {}};
  const size_t n_out = size_t(p.n_q * p.H * p.d);
  b.out.resize(n_out);
  b.lse.resize(size_t(p.n_q * p.H));
  ref::attention(p.args(b.out.data(), b.lse.data()));
  b.dout = random_vec(rng, n_out);
  b.delta.resize(size_t(p.n_q * p.H));
  attention_delta(b.out.data(), b.dout.data(), p.n_q, p.H, p.d, b.delta.data());
  const float lo = zero_start ? 0.0f : -1.0f, hi = zero_start ? 0.0f : 1.0f;
  b.dq = random_vec(rng, n_out, lo, hi);
  b.dk = random_vec(rng, p.k.size(), lo, hi);
  b.dv = random_vec(rng, p.k.size(), lo, hi);
  return b;
}

struct Grads {
  std::vector<float> dq, dk, dv;
};

AttentionBackwardArgs args_of(Bwd& b, Grads& g, bool pass_delta) {
  AttentionBackwardArgs a;
  a.fwd = b.p.args(b.out.data(), b.lse.data());
  a.dout = b.dout.data();
  a.delta = pass_delta ? b.delta.data() : nullptr;
  a.dq = g.dq.data();
  a.dk = g.dk.data();
  a.dv = g.dv.data();
  return a;
}

Grads run_ref(Bwd& b, bool pass_delta = false) {
  Grads g{b.dq, b.dk, b.dv};
  ref::attention_backward(args_of(b, g, pass_delta));
  return g;
}

Grads run_opt(Bwd& b, ThreadPool& pool, bool pass_delta) {
  Grads g{b.dq, b.dk, b.dv};
  attention_backward(args_of(b, g, pass_delta), pool);
  return g;
}

// |got - want| <= tol * (1 + |want|) everywhere, except the padding of k/v rows (floats
// G*d..kv_stride of each row), which must be left as they were.
void expect_close(const Grads& got, const Grads& want, const Bwd& b, double tol,
                  const std::string& what) {
  auto cmp = [&](const std::vector<float>& x, const std::vector<float>& y, const char* name,
                 int64_t row, int64_t used) {
    double worst = 0.0;
    size_t at = 0;
    for (size_t e = 0; e < x.size(); ++e) {
      const bool pad = int64_t(e % size_t(row)) >= used;
      const double err = std::fabs(double(x[e]) - y[e]) / (1.0 + std::fabs(y[e]));
      if (pad) {
        ASSERT_EQ(x[e], y[e]) << what << " " << name << " padding " << e;
      } else if (!(err <= worst)) {
        worst = err;
        at = e;
      }
    }
    ASSERT_LE(worst, tol) << what << " " << name << " at " << at << ": " << x[at] << " vs "
                          << y[at];
  };
  const int64_t hd = int64_t(b.p.H) * b.p.d, kvd = int64_t(b.p.G) * b.p.d;
  cmp(got.dq, want.dq, "dq", hd, hd);
  if (testing::Test::HasFatalFailure()) return;
  cmp(got.dk, want.dk, "dk", b.p.kv_stride, kvd);
  if (testing::Test::HasFatalFailure()) return;
  cmp(got.dv, want.dv, "dv", b.p.kv_stride, kvd);
}

// ---- (a) the reference against finite differences --------------------------------

// Float64 attention of p with q, k, v replaced by the given values: loss = sum(out * r).
double loss64(const Problem& p, const std::vector<double>& q, const std::vector<double>& k,
              const std::vector<double>& v, const std::vector<float>& r) {
  const int group = p.H / p.G;
  const double scale = double(1.0f / std::sqrt(float(p.d)));  // the float scale args() uses
  double loss = 0.0;
  std::vector<double> s(size_t(p.n_kv));
  for (int64_t i = 0; i < p.n_q; ++i)
    for (int h = 0; h < p.H; ++h) {
      const int64_t qo = (i * p.H + h) * p.d, ko = int64_t(h / group) * p.d;
      double mx = -std::numeric_limits<double>::infinity();
      std::vector<bool> vis(size_t(p.n_kv));
      for (int64_t j = 0; j < p.n_kv; ++j) {
        const int64_t behind = p.causal ? int64_t(p.q_pos[size_t(i)]) - p.kv_pos[size_t(j)] : 0;
        vis[size_t(j)] = behind >= 0 && (p.window <= 0 || behind < p.window);
        if (!vis[size_t(j)]) continue;
        double dot = 0.0;
        for (int c = 0; c < p.d; ++c) dot += q[size_t(qo + c)] * k[size_t(j * p.kv_stride + ko + c)];
        s[size_t(j)] = dot * scale;
        mx = std::max(mx, s[size_t(j)]);
      }
      double sum = 0.0;
      std::vector<double> o(size_t(p.d), 0.0);
      for (int64_t j = 0; j < p.n_kv; ++j) {
        if (!vis[size_t(j)]) continue;
        const double e = std::exp(s[size_t(j)] - mx);
        sum += e;
        for (int c = 0; c < p.d; ++c) o[size_t(c)] += e * v[size_t(j * p.kv_stride + ko + c)];
      }
      if (sum > 0.0)
        for (int c = 0; c < p.d; ++c) loss += o[size_t(c)] / sum * r[size_t(qo + c)];
    }
  return loss;
}

void check_finite_differences(const Problem& p, uint32_t seed, const std::string& what) {
  std::mt19937 rng(seed);
  Bwd b = make_bwd(rng, p, true);
  const Grads g = run_ref(b);
  std::vector<double> q(p.q.begin(), p.q.end()), k(p.k.begin(), p.k.end()),
      v(p.v.begin(), p.v.end());
  const double eps = 1e-5;
  auto check = [&](std::vector<double>& x, const std::vector<float>& grad, int64_t row,
                   int64_t used, const char* name) {
    for (size_t e = 0; e < x.size(); ++e) {
      if (int64_t(e % size_t(row)) >= used) continue;  // padding of k/v rows
      const double x0 = x[e];
      x[e] = x0 + eps;
      const double up = loss64(p, q, k, v, b.dout);
      x[e] = x0 - eps;
      const double down = loss64(p, q, k, v, b.dout);
      x[e] = x0;
      const double fd = (up - down) / (2 * eps);
      ASSERT_NEAR(grad[e], fd, 2e-6 * (1.0 + std::fabs(fd))) << what << " " << name << " " << e;
    }
  };
  const int64_t hd = int64_t(p.H) * p.d, kvd = int64_t(p.G) * p.d;
  check(q, g.dq, hd, hd, "dq");
  check(k, g.dk, p.kv_stride, kvd, "dk");
  check(v, g.dv, p.kv_stride, kvd, "dv");
}

TEST(AttentionBackward, ReferenceMatchesFiniteDifferences) {
  struct Case {
    int H, G, d;
    int64_t n_q, n_kv;
    bool causal;
    int32_t window, q_shift;
  };
  const std::vector<Case> cases{
      {2, 2, 5, 6, 6, true, 0, 0},    {2, 2, 5, 6, 6, false, 0, 0},
      {4, 2, 12, 5, 7, true, 0, 0},   {3, 1, 5, 7, 7, true, 0, 0},
      {3, 1, 12, 4, 9, false, 0, 0},  {2, 1, 8, 3, 8, true, 0, 0},   // chunk: n_q < n_kv
      {2, 2, 5, 8, 8, true, 3, 0},    {4, 2, 5, 5, 9, true, 4, 0},   // sliding window
      {2, 1, 6, 6, 6, true, 0, -2},  // the first queries see no key at all
  };
  int k = 0;
  for (const Case& c : cases) {
    std::mt19937 rng(100 + k);
    Problem p = make_problem(rng, c.H, c.G, c.d, c.n_q, c.n_kv, c.causal, k % 2 ? 3 : 0,
                             k % 3 ? 0 : 40, c.q_shift);
    p.window = c.window;
    check_finite_differences(p, 7 + uint32_t(k++),
                             "H" + std::to_string(c.H) + " G" + std::to_string(c.G) + " d" +
                                 std::to_string(c.d) + " nq" + std::to_string(c.n_q) + " nkv" +
                                 std::to_string(c.n_kv) + (c.causal ? " causal" : "") +
                                 " window " + std::to_string(c.window));
    if (HasFatalFailure()) return;
  }
}

// ---- (b) split over keys (and queries): ring attention ----------------------------

// One call (ref, or optimized on pool) over the queries qs and keys ks of b (lists of
// indices), as a rank of a ring would make it: its own copies of those rows, the whole
// attention's out and lse; its gradients are added into g (rows scattered back).
void call_on(const Bwd& b, const std::vector<int64_t>& qs, const std::vector<int64_t>& ks,
             Grads& g, ThreadPool* pool) {
  const Problem& p = b.p;
  const int64_t hd = int64_t(p.H) * p.d, st = p.kv_stride;
  Bwd s;
  s.p = p;
  s.p.n_q = int64_t(qs.size());
  s.p.n_kv = int64_t(ks.size());
  s.p.q.clear();
  s.p.q_pos.clear();
  s.p.k.clear();
  s.p.v.clear();
  s.p.kv_pos.clear();
  Grads sg;
  using Rows = std::vector<float>;
  struct Take {
    Rows* dst;
    const Rows* src;
    int64_t n;
  };
  const std::vector<Take> q_rows{{&s.p.q, &p.q, hd},       {&s.out, &b.out, hd},
                                 {&s.dout, &b.dout, hd},   {&sg.dq, &g.dq, hd},
                                 {&s.lse, &b.lse, p.H}};
  const std::vector<Take> k_rows{{&s.p.k, &p.k, st}, {&s.p.v, &p.v, st},
                                 {&sg.dk, &g.dk, st}, {&sg.dv, &g.dv, st}};
  for (int64_t i : qs) {
    for (const Take& t : q_rows)
      t.dst->insert(t.dst->end(), t.src->begin() + i * t.n, t.src->begin() + (i + 1) * t.n);
    s.p.q_pos.push_back(p.q_pos[size_t(i)]);
  }
  for (int64_t j : ks) {
    for (const Take& t : k_rows)
      t.dst->insert(t.dst->end(), t.src->begin() + j * t.n, t.src->begin() + (j + 1) * t.n);
    s.p.kv_pos.push_back(p.kv_pos[size_t(j)]);
  }
  if (!qs.empty() && !ks.empty()) {
    AttentionBackwardArgs a = args_of(s, sg, false);
    if (pool)
      attention_backward(a, *pool);
    else
      ref::attention_backward(a);
  }
  for (size_t n = 0; n < qs.size(); ++n)
    std::copy_n(sg.dq.begin() + int64_t(n) * hd, hd, g.dq.begin() + qs[n] * hd);
  for (size_t n = 0; n < ks.size(); ++n) {
    std::copy_n(sg.dk.begin() + int64_t(n) * st, st, g.dk.begin() + ks[n] * st);
    std::copy_n(sg.dv.begin() + int64_t(n) * st, st, g.dv.begin() + ks[n] * st);
  }
}

TEST(AttentionBackward, KeySplitsSumToTheWhole) {
  ThreadPool pool(2);
  struct Case {
    int H, G, d;
    int64_t n_q, n_kv;
    bool causal;
    int32_t window;
  };
  for (const Case& c : std::vector<Case>{{4, 2, 16, 40, 40, true, 0},
                                         {3, 1, 12, 20, 70, true, 0},
                                         {4, 4, 64, 130, 130, true, 0},
                                         {2, 2, 8, 30, 50, false, 0},
                                         {6, 2, 32, 90, 90, true, 25}}) {
    std::mt19937 rng(uint32_t(c.n_q * 7 + c.d));
    Problem p = make_problem(rng, c.H, c.G, c.d, c.n_q, c.n_kv, c.causal, 2, 5);
    p.window = c.window;
    Bwd b = make_bwd(rng, p, false);
    const std::string what = "H" + std::to_string(c.H) + " G" + std::to_string(c.G) + " d" +
                             std::to_string(c.d) + " nq" + std::to_string(c.n_q) + " nkv" +
                             std::to_string(c.n_kv) + " window " + std::to_string(c.window);
    std::vector<int64_t> all_q(size_t(p.n_q)), all_k(size_t(p.n_kv));
    std::iota(all_q.begin(), all_q.end(), 0);
    std::iota(all_k.begin(), all_k.end(), 0);
    const Grads whole = run_ref(b);
    // Key sets: contiguous blocks (a ring of 4 ranks), and keys dealt at random to 3
    // ranks; queries whole, or split in two halves too (each half meets every key set).
    std::vector<std::vector<std::vector<int64_t>>> splits(2);
    for (int r = 0; r < 4; ++r) {
      const auto [j0, j1] = split_range(p.n_kv, r, 4);
      splits[0].emplace_back(all_k.begin() + j0, all_k.begin() + j1);
    }
    splits[1].resize(3);
    for (int64_t j = 0; j < p.n_kv; ++j) splits[1][rng() % 3].push_back(j);
    for (int split = 0; split < 2; ++split)
      for (bool q_halves : {false, true})
        for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
          SCOPED_TRACE(what + " split " + std::to_string(split) + (q_halves ? " q halves" : "") +
                       (tp ? " optimized" : " reference"));
          std::vector<std::vector<int64_t>> qsets{all_q};
          if (q_halves)
            qsets = {std::vector<int64_t>(all_q.begin(), all_q.begin() + p.n_q / 2),
                     std::vector<int64_t>(all_q.begin() + p.n_q / 2, all_q.end())};
          Grads sum{b.dq, b.dk, b.dv};
          for (const auto& qs : qsets)
            for (const auto& ks : splits[size_t(split)]) call_on(b, qs, ks, sum, tp);
          expect_close(sum, whole, b, 1e-5, "split");
          if (HasFatalFailure()) return;
        }
  }
}

// ---- (c) the optimized kernel against the reference --------------------------------

TEST(AttentionBackward, OptimizedMatchesReference) {
  ThreadPool p1(1), p2(2), p3(3);
  struct Case {
    int H, G, d;
    int64_t n_q, n_kv;
    bool causal;
    int32_t window = 0, q_shift = 0;
    bool shuffled = false;
  };
  const std::vector<Case> cases{
      {12, 4, 64, 200, 200, true},        // the small preset's heads; partial tiles
      {12, 4, 64, 130, 300, true},        // chunked prefill: n_q < n_kv
      {8, 2, 128, 70, 70, true},          // d = 128
      {3, 1, 33, 37, 37, true},           // MQA, odd d
      {4, 4, 5, 9, 9, false},             // tiny odd d, not causal
      {6, 3, 80, 65, 129, false},         // d a multiple of 16 but not of 64
      {2, 1, 12, 100, 100, true, 17},     // sliding window
      {4, 2, 64, 50, 150, true, 0, -120}, // the first queries see no key (lse -inf)
      {4, 2, 16, 70, 90, true, 30, 0, true},  // keys out of position order, window
      {4, 1, 128, 96, 96, true},          // MQA, d = 128
      {2, 2, 64, 1, 77, true},            // one query (decode-like)
      {12, 4, 64, 129, 129, false, 0, 0, true},
  };
  test::for_each_isa([&](const std::string& isa) {
    int k = 0;
    for (const Case& c : cases) {
      std::mt19937 rng(uint32_t(1000 + k));
      Problem p = make_problem(rng, c.H, c.G, c.d, c.n_q, c.n_kv, c.causal, k % 2 ? 3 : 0,
                               k % 3 ? 0 : 1000, c.q_shift, 1, c.shuffled);
      p.window = c.window;
      Bwd b = make_bwd(rng, p, k % 4 == 0);
      const Grads want = run_ref(b);
      for (ThreadPool* pool : {&p1, &p2, &p3}) {
        const bool pass_delta = (k + pool->size()) % 2 == 0;
        const std::string what = isa + " H" + std::to_string(c.H) + " G" + std::to_string(c.G) +
                                 " d" + std::to_string(c.d) + " nq" + std::to_string(c.n_q) +
                                 " nkv" + std::to_string(c.n_kv) + (c.causal ? " causal" : "") +
                                 " window " + std::to_string(c.window) + " threads " +
                                 std::to_string(pool->size()) + (pass_delta ? " delta" : "");
        const Grads got = run_opt(b, *pool, pass_delta);
        expect_close(got, want, b, 1e-5, what);
        if (HasFatalFailure()) return;
        for (const auto& x : {got.dq, got.dk, got.dv})
          for (float e : x) ASSERT_TRUE(std::isfinite(e)) << what;
      }
      ++k;
    }
  });
}

TEST(AttentionBackward, DeltaIsDoutDotOut) {
  std::mt19937 rng(3);
  const int64_t n = 7;
  const int H = 3, d = 37;
  const std::vector<float> out = random_vec(rng, size_t(n * H * d)),
                           dout = random_vec(rng, size_t(n * H * d));
  std::vector<float> delta(size_t(n * H), 99.0f);
  attention_delta(out.data(), dout.data(), n, H, d, delta.data());
  for (int64_t r = 0; r < n * H; ++r) {
    double s = 0.0;
    for (int c = 0; c < d; ++c) s += double(out[size_t(r * d + c)]) * dout[size_t(r * d + c)];
    EXPECT_NEAR(delta[size_t(r)], s, 1e-5) << r;
  }
}

TEST(AttentionBackward, RejectsSoftcapAndPagesAndEmptyIsNoOp) {
  std::mt19937 rng(5);
  ThreadPool pool(2);
  Problem p = make_problem(rng, 2, 1, 8, 4, 4, true, 0, 0);
  Bwd b = make_bwd(rng, p, false);
  Grads g{b.dq, b.dk, b.dv};
  AttentionBackwardArgs a = args_of(b, g, false);
  a.fwd.softcap = 30.0f;
  EXPECT_THROW(attention_backward(a, pool), Error);
  EXPECT_THROW(ref::attention_backward(a), Error);
  a.fwd.softcap = 0.0f;
  KvPage page{};
  a.fwd.pages.page = &page;
  a.fwd.pages.tokens = 16;
  EXPECT_THROW(attention_backward(a, pool), Error);
  a.fwd.pages = {};
  a.fwd.n_kv = 0;
  attention_backward(a, pool);
  ref::attention_backward(a);
  EXPECT_EQ(g.dq, b.dq);
  EXPECT_EQ(g.dk, b.dk);
}

}  // namespace
}  // namespace tandem::kernels
