// The whole model's gradient (ModelGrad, f32 kernels) against central finite differences
// of a float64 forward written here, for every weight of a small model; token order,
// ignored targets and activation checkpointing.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "tandem/train/model_grad.hpp"
#include "tandem/train/params.hpp"
#include "train/train_specs.hpp"

namespace tandem::train {
namespace {

SynthSpec small_spec() { return test::gqa_llama(16, 2, 24, 32); }

// Random weights large enough that every path carries gradient: matrices U(-0.3, 0.3),
// norm weights U(0.8, 1.2).
void randomize(ParamSet& p, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mat(-0.3f, 0.3f), norm(0.8f, 1.2f);
  for (const SynthTensor& t : p.tensors()) {
    float* v = p.find(t.name);
    for (int64_t i = 0; i < t.rows * t.cols; ++i) v[i] = t.matrix ? mat(rng) : norm(rng);
  }
}

// The model's loss (sum of -log p(target)) in float64, from the same weights.
double loss64(const ParamSet& p, const std::vector<double>& w, const SeqShard& s) {
  const SynthSpec& sp = p.spec();
  const int64_t D = sp.n_embd, H = sp.n_head, G = sp.n_head_kv, d = D / H, F = sp.n_ff,
                V = sp.n_vocab, n = s.size();
  auto at = [&](const std::string& name) {
    return w.data() + (p.find(name) - p.data());
  };
  auto rms = [&](const std::vector<double>& x, const double* g) {
    std::vector<double> y(x.size());
    for (int64_t t = 0; t < n; ++t) {
      double ss = 0;
      for (int64_t j = 0; j < D; ++j) ss += x[t * D + j] * x[t * D + j];
      const double r = 1.0 / std::sqrt(ss / double(D) + double(sp.rms_eps));
      for (int64_t j = 0; j < D; ++j) y[t * D + j] = x[t * D + j] * r * g[j];
    }
    return y;
  };
  auto mm = [&](const std::vector<double>& x, const double* W, int64_t rows, int64_t cols) {
    std::vector<double> y(size_t(n * rows), 0.0);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double acc = 0;
        for (int64_t c = 0; c < cols; ++c) acc += x[t * cols + c] * W[r * cols + c];
        y[t * rows + r] = acc;
      }
    return y;
  };
  auto rope = [&](std::vector<double>& x, int64_t heads) {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < d / 2; ++i) {
          const double th = double(s.pos[t]) * std::pow(double(sp.rope_freq_base), -2.0 * double(i) / double(d));
          double* v = x.data() + (t * heads + h) * d;
          const double a = v[2 * i], b = v[2 * i + 1];
          v[2 * i] = a * std::cos(th) - b * std::sin(th);
          v[2 * i + 1] = a * std::sin(th) + b * std::cos(th);
        }
  };
  std::vector<double> x(size_t(n * D));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < D; ++j) x[t * D + j] = at("token_embd.weight")[s.tokens[t] * D + j];
  for (int64_t l = 0; l < sp.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const auto xn = rms(x, at(b + "attn_norm.weight"));
    auto q = mm(xn, at(b + "attn_q.weight"), H * d, D);
    auto k = mm(xn, at(b + "attn_k.weight"), G * d, D);
    const auto v = mm(xn, at(b + "attn_v.weight"), G * d, D);
    rope(q, H);
    rope(k, G);
    std::vector<double> ao(size_t(n * H * d), 0.0);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t kh = h / (H / G);
        std::vector<double> sc(size_t(n), -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          if (s.pos[j] > s.pos[t]) continue;
          double dot = 0;
          for (int64_t e = 0; e < d; ++e) dot += q[(t * H + h) * d + e] * k[(j * G + kh) * d + e];
          sc[j] = dot / std::sqrt(double(d));
          mx = std::max(mx, sc[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < n; ++j) z += std::isinf(sc[j]) ? 0.0 : std::exp(sc[j] - mx);
        for (int64_t j = 0; j < n; ++j) {
          if (std::isinf(sc[j])) continue;
          const double pj = std::exp(sc[j] - mx) / z;
          for (int64_t e = 0; e < d; ++e) ao[(t * H + h) * d + e] += pj * v[(j * G + kh) * d + e];
        }
      }
    const auto o = mm(ao, at(b + "attn_output.weight"), D, H * d);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    const auto xn2 = rms(x, at(b + "ffn_norm.weight"));
    const auto g = mm(xn2, at(b + "ffn_gate.weight"), F, D);
    auto u = mm(xn2, at(b + "ffn_up.weight"), F, D);
    for (size_t i = 0; i < u.size(); ++i) u[i] *= g[i] / (1.0 + std::exp(-g[i]));
    const auto dn = mm(u, at(b + "ffn_down.weight"), D, F);
    for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
  }
  const auto xf = rms(x, at("output_norm.weight"));
  const auto logits = mm(xf, at("output.weight"), V, D);
  double loss = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (s.targets[t] < 0) continue;
    double mx = -INFINITY, z = 0;
    for (int64_t c = 0; c < V; ++c) mx = std::max(mx, logits[t * V + c]);
    for (int64_t c = 0; c < V; ++c) z += std::exp(logits[t * V + c] - mx);
    loss += std::log(z) + mx - logits[t * V + s.targets[t]];
  }
  return loss;
}

SeqShard random_shard(int64_t n, int64_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(V - 1));
  SeqShard s;
  for (int64_t i = 0; i < n; ++i) {
    s.tokens.push_back(tok(rng));
    s.targets.push_back(i % 3 == 1 ? -1 : tok(rng));  // every third token not counted
    s.pos.push_back(int32_t(i));
  }
  return s;
}

struct Grads {
  double loss;
  std::vector<float> g;
};

Grads model_grads(ParamSet& p, const SeqShard& s, bool ckpt, int threads) {
  kernels::ThreadPool pool(threads);
  auto attn = parallel::make_local_attention_grad(attn_shape(p.spec()), pool);
  ModelGrad mg(p, *attn, pool, s.size(), ckpt);
  ParamSet g(p.spec());
  const LossSum r = mg.step(s, 1.0f, g);
  return {r.loss, std::vector<float>(g.data(), g.data() + g.size())};
}

TEST(ModelGrad, EveryWeightMatchesFiniteDifferencesOfAFloat64Forward) {
  ParamSet p(small_spec());
  randomize(p, 7);
  const SeqShard s = random_shard(9, p.spec().n_vocab, 3);
  const Grads got = model_grads(p, s, false, 2);
  std::vector<double> w(p.data(), p.data() + p.size());
  const double l0 = loss64(p, w, s);
  EXPECT_NEAR(got.loss, l0, 1e-4 * std::abs(l0));
  double gmax = 0;
  for (float v : got.g) gmax = std::max(gmax, double(std::abs(v)));
  ASSERT_GT(gmax, 1e-3);
  int checked = 0;
  for (const SynthTensor& t : p.tensors()) {
    const int64_t off = p.find(t.name) - p.data();
    double tmax = 0;
    for (int64_t i = 0; i < t.rows * t.cols; ++i) {
      const double h = 1e-5;
      const double keep = w[size_t(off + i)];
      w[size_t(off + i)] = keep + h;
      const double lp = loss64(p, w, s);
      w[size_t(off + i)] = keep - h;
      const double lm = loss64(p, w, s);
      w[size_t(off + i)] = keep;
      const double fd = (lp - lm) / (2 * h);
      tmax = std::max(tmax, std::abs(fd));
      EXPECT_NEAR(got.g[size_t(off + i)], fd, 2e-4 * gmax + 1e-3 * std::abs(fd))
          << t.name << " element " << i;
      ++checked;
    }
    // Every tensor receives gradient (rows of the embedding that no token reads excepted).
    EXPECT_GT(tmax, 0.0) << t.name;
  }
  EXPECT_GT(checked, 4000);
}

TEST(ModelGrad, TokenOrderOnARankDoesNotChangeTheResult) {
  // A rank may hold its tokens in any order (zigzag shards): positions drive the mask.
  ParamSet p(small_spec());
  randomize(p, 11);
  const SeqShard s = random_shard(12, p.spec().n_vocab, 5);
  SeqShard perm;
  for (int64_t i : {7, 0, 11, 3, 1, 9, 2, 10, 4, 8, 6, 5}) {
    perm.tokens.push_back(s.tokens[size_t(i)]);
    perm.targets.push_back(s.targets[size_t(i)]);
    perm.pos.push_back(s.pos[size_t(i)]);
  }
  const Grads a = model_grads(p, s, false, 1), b = model_grads(p, perm, false, 1);
  EXPECT_NEAR(a.loss, b.loss, 1e-5 * std::abs(a.loss));
  for (size_t i = 0; i < a.g.size(); ++i) ASSERT_NEAR(a.g[i], b.g[i], 1e-5) << i;
}

TEST(ModelGrad, CheckpointedLayersGiveTheSameGradients) {
  ParamSet p(small_spec());
  randomize(p, 13);
  const SeqShard s = random_shard(21, p.spec().n_vocab, 8);
  for (int threads : {1, 2}) {
    const Grads a = model_grads(p, s, false, threads), b = model_grads(p, s, true, threads);
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_EQ(a.g, b.g) << threads << " thread(s)";
  }
}

TEST(ModelGrad, EvaluateGivesTheLossOfStep) {
  ParamSet p(small_spec());
  randomize(p, 17);
  const SeqShard s = random_shard(10, p.spec().n_vocab, 9);
  kernels::ThreadPool pool(2);
  auto attn = parallel::make_local_attention_grad(attn_shape(p.spec()), pool);
  ModelGrad mg(p, *attn, pool, s.size(), false);
  ParamSet g(p.spec());
  const LossSum a = mg.step(s, 1.0f, g), b = mg.evaluate(s);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.counted, b.counted);
  EXPECT_EQ(a.counted, 7);
  EXPECT_EQ(a.correct, b.correct);
}

}  // namespace
}  // namespace tandem::train
