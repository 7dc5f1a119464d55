// Attention for training on P in-process ranks equals the one-rank attention on the
// gathered sequence: out and lse of the forward, dq, dk and dv of the backward, for every
// scheme (ring, Ulysses, hybrid UxR), rank counts that do not divide the sequence (some
// ranks empty), and head counts that split unevenly over the ranks (KV heads replicated
// on several ranks, ranks whose heads straddle two KV heads). Also the exchange that the
// Ulysses backward adds: KV-head tensors come back summed over their replicas.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tandem/comm/in_process.hpp"
#include "tandem/core/error.hpp"
#include "tandem/parallel/attention_grad.hpp"
#include "tandem/parallel/head_exchange.hpp"
#include "tandem/parallel/sharding.hpp"

namespace tandem::parallel {
namespace {

std::vector<float> random_floats(int64_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  return x;
}

// max |a - ref| / max |ref| over the whole tensor.
double rel_diff(const std::vector<float>& a, const std::vector<float>& ref) {
  EXPECT_EQ(a.size(), ref.size());
  double diff = 0, scale = 1e-30;
  for (size_t i = 0; i < ref.size() && i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(ref[i])));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  return diff / scale;
}

// One layer's tensors over the whole sequence: inputs, and the forward's and backward's
// results.
struct Layer {
  std::vector<int32_t> pos;
  std::vector<float> q, k, v, dout;        // inputs
  std::vector<float> out, lse, dq, dk, dv;  // results
};

Layer make_layer(AttnShape sh, int64_t N) {
  Layer l;
  for (int64_t i = 0; i < N; ++i) l.pos.push_back(int32_t(i));
  // Larger q than unit scale, so attention is far from uniform.
  l.q = random_floats(N * sh.q_dim(), 2.0f, 1);
  l.k = random_floats(N * sh.kv_dim(), 1.0f, 2);
  l.v = random_floats(N * sh.kv_dim(), 1.0f, 3);
  l.dout = random_floats(N * sh.q_dim(), 1.0f, 4);
  l.out.assign(l.q.size(), 0.0f);
  l.lse.assign(size_t(N * sh.H), 0.0f);
  l.dq.assign(l.q.size(), 0.0f);
  l.dk.assign(l.k.size(), 0.0f);
  l.dv.assign(l.v.size(), 0.0f);
  return l;
}

using Factory = std::function<std::unique_ptr<AttentionGrad>(AttnShape, kernels::ThreadPool&,
                                                             comm::Communicator&)>;

// Forward then backward on P ranks, each holding its contiguous shard of `in`'s tokens;
// the results gathered into a copy of `in`.
Layer run_sharded(const Factory& make, int P, AttnShape sh, const Layer& in) {
  Layer g = in;
  const int64_t N = int64_t(in.pos.size()), qd = sh.q_dim(), kvd = sh.kv_dim();
  comm::run_in_process(P, [&](comm::Communicator& c) {
    kernels::ThreadPool pool(1);
    auto attn = make(sh, pool, c);
    const std::vector<int64_t> idx = shard_indices(N, P, c.rank(), Placement::Contiguous);
    const int64_t n = int64_t(idx.size());
    // Every buffer has at least one element: an empty shard still passes valid pointers.
    auto rows = [&](const std::vector<float>& src, int64_t w) {
      std::vector<float> r(size_t(std::max<int64_t>(1, n * w)));
      for (int64_t t = 0; t < n; ++t)
        std::copy_n(src.begin() + idx[size_t(t)] * w, w, r.begin() + t * w);
      return r;
    };
    auto put = [&](const std::vector<float>& r, std::vector<float>& dst, int64_t w) {
      for (int64_t t = 0; t < n; ++t)  // distinct rows per rank: no two threads write one
        std::copy_n(r.begin() + t * w, w, dst.begin() + idx[size_t(t)] * w);
    };
    std::vector<int32_t> pos(size_t(std::max<int64_t>(1, n)));
    for (int64_t t = 0; t < n; ++t) pos[size_t(t)] = int32_t(idx[size_t(t)]);
    const std::vector<float> q = rows(in.q, qd), k = rows(in.k, kvd), v = rows(in.v, kvd),
                             dout = rows(in.dout, qd);
    std::vector<float> out(q.size()), lse(size_t(std::max<int64_t>(1, n * sh.H))),
        dq(q.size()), dk(k.size()), dv(v.size());
    AttnGradStep s;
    s.n = n;
    s.pos = pos.data();
    s.q = q.data();
    s.k = k.data();
    s.v = v.data();
    s.out = out.data();
    s.lse = lse.data();
    attn->forward(s);
    attn->backward(s, dout.data(), dq.data(), dk.data(), dv.data());
    put(out, g.out, qd);
    put(lse, g.lse, sh.H);
    put(dq, g.dq, qd);
    put(dk, g.dk, kvd);
    put(dv, g.dv, kvd);
  });
  return g;
}

Factory local() {
  return [](AttnShape sh, kernels::ThreadPool& pool, comm::Communicator&) {
    return make_local_attention_grad(sh, pool);
  };
}
Factory ring() {
  return [](AttnShape sh, kernels::ThreadPool& pool, comm::Communicator& c) {
    return make_ring_attention_grad(sh, pool, c);
  };
}
Factory ulysses() {
  return [](AttnShape sh, kernels::ThreadPool& pool, comm::Communicator& c) {
    return make_ulysses_attention_grad(sh, pool, c);
  };
}
Factory hybrid(int U, int R) {
  return [U, R](AttnShape sh, kernels::ThreadPool& pool, comm::Communicator& c) {
    return make_hybrid_attention_grad(sh, pool, c, U, R);
  };
}

struct Case {
  std::string name;
  int P;
  Factory make;
};

std::vector<Case> cases() {
  std::vector<Case> c;
  for (int P = 1; P <= 4; ++P) {
    c.push_back({"ring", P, ring()});
    c.push_back({"ulysses", P, ulysses()});
  }
  for (const auto& [U, R] : {std::pair{2, 2}, {2, 1}, {1, 2}, {3, 1}, {1, 3}, {1, 4}})
    c.push_back({"hybrid:" + std::to_string(U) + "x" + std::to_string(R), U * R, hybrid(U, R)});
  return c;
}

AttnShape shape(int H, int G, int d) {
  AttnShape s{H, G, d, 0.0f};
  s.scale = 1.0f / std::sqrt(float(d));
  return s;
}

TEST(AttentionGrad, EverySchemeOnPRanksEqualsOneRank) {
  for (const auto& [H, G] : {std::pair{4, 2}, {6, 2}, {3, 1}}) {
    const AttnShape sh = shape(H, G, 8);
    for (const int64_t N : {3, 13, 37}) {  // 3: fewer tokens than ranks; none divisible by 2..4
      const Layer in = make_layer(sh, N);
      const Layer ref = run_sharded(local(), 1, sh, in);
      double mag = 0;
      for (float x : ref.dk) mag = std::max(mag, double(std::abs(x)));
      ASSERT_GT(mag, 1e-3);  // the gradient is not trivially small
      for (const Case& c : cases()) {
        SCOPED_TRACE(c.name + " P=" + std::to_string(c.P) + " H=" + std::to_string(H) +
                     " G=" + std::to_string(G) + " N=" + std::to_string(N));
        const Layer got = run_sharded(c.make, c.P, sh, in);
        EXPECT_LT(rel_diff(got.out, ref.out), 1e-5);
        EXPECT_LT(rel_diff(got.lse, ref.lse), 1e-5);
        EXPECT_LT(rel_diff(got.dq, ref.dq), 1e-5);
        EXPECT_LT(rel_diff(got.dk, ref.dk), 1e-5);
        EXPECT_LT(rel_diff(got.dv, ref.dv), 1e-5);
      }
    }
  }
}

TEST(AttentionGrad, HybridNeedsUTimesRRanks) {
  comm::run_in_process(3, [](comm::Communicator& c) {
    kernels::ThreadPool pool(1);
    EXPECT_THROW(make_hybrid_attention_grad(shape(4, 2, 8), pool, c, 2, 2), Error);
  });
}

// The general exchange: a query-head tensor goes to the heads and back unchanged; a
// KV-head tensor comes back multiplied by the number of members holding each KV head.
TEST(HeadExchange, KvTensorsComeBackSummedOverReplicas) {
  for (const auto& [H, G] : {std::pair{4, 2}, {6, 2}, {3, 1}, {8, 8}})
    for (int U = 1; U <= 4; ++U) {
      SCOPED_TRACE("H=" + std::to_string(H) + " G=" + std::to_string(G) + " U=" + std::to_string(U));
      const std::vector<HeadGroup> groups = split_heads(H, G, U);
      std::vector<int> replicas(size_t(G), 0);
      for (const HeadGroup& g : groups)
        for (int kv = g.g0; kv < g.g0 + g.ng; ++kv) ++replicas[size_t(kv)];
      comm::run_in_process(U, [&](comm::Communicator& c) {
        const AttnShape sh = shape(H, G, 2);
        HeadExchange ex(sh, c);
        const int64_t m = 2 + c.rank();  // uneven token counts
        std::vector<int32_t> pos(static_cast<size_t>(m));
        ex.begin_step(m, pos.data());
        const int64_t n = ex.tokens(), w = 3;
        const std::vector<float> a = random_floats(m * H * w, 1.0f, 10 + c.rank());
        const std::vector<float> b = random_floats(m * G * w, 1.0f, 20 + c.rank());
        std::vector<float> ah(size_t(n * ex.view().q_heads * w)), bh(size_t(n * ex.view().kv_heads * w));
        const HeadExchange::Moved qs[] = {{a.data(), ah.data(), int(w)}};
        const HeadExchange::Moved kvs[] = {{b.data(), bh.data(), int(w)}};
        ex.to_heads(qs, kvs);
        std::vector<float> a2(a.size(), -1.0f), b2(b.size(), -1.0f);
        const HeadExchange::Moved qs2[] = {{ah.data(), a2.data(), int(w)}};
        const HeadExchange::Moved kvs2[] = {{bh.data(), b2.data(), int(w)}};
        ex.to_tokens(qs2, kvs2);
        EXPECT_EQ(a2, a);
        for (int64_t t = 0; t < m; ++t)
          for (int kv = 0; kv < G; ++kv)
            for (int64_t e = 0; e < w; ++e) {
              const size_t i = size_t((t * G + kv) * w + e);
              EXPECT_FLOAT_EQ(b2[i], float(replicas[size_t(kv)]) * b[i]);
            }
      });
    }
}

}  // namespace
}  // namespace tandem::parallel
