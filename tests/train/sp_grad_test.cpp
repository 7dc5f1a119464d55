// Sequence-parallel training is exact: on P in-process ranks, every scheme's weight
// gradients (summed over ranks) equal the one-rank gradients, and training runs give the
// same losses step by step. The model has GQA (H=4, G=2): Ulysses on 3 and 4 ranks
// splits heads unevenly and replicates KV heads.
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>
#include <random>

#include "tandem/comm/in_process.hpp"
#include "tandem/train/sp_attention.hpp"
#include "tandem/train/trainer.hpp"
#include "train/train_specs.hpp"

namespace tandem::train {
namespace {

SynthSpec gqa_spec() {
  SynthSpec s = test::gqa_llama(32, 2, 48, 40);
  s.seed = 5;
  return s;
}

Sequence random_sequence(int64_t n, int64_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(V - 1));
  Sequence s;
  for (int64_t i = 0; i < n; ++i) {
    s.tokens.push_back(tok(rng));
    s.targets.push_back(i % 4 == 2 ? -1 : tok(rng));
  }
  return s;
}

// The summed gradient and loss of a sequence under `scheme` on P in-process ranks.
std::pair<double, std::vector<float>> sp_grads(const std::string& scheme, int P, const Sequence& seq,
                                               bool ckpt) {
  ParamSet base(gqa_spec());
  init_params(base);
  // Larger weights than the init's, so attention is far from uniform.
  for (int64_t i = 0; i < base.size(); ++i) base.data()[i] *= 8.0f;
  std::vector<float> sum;
  double loss = 0;
  std::mutex m;
  comm::run_in_process(P, [&](comm::Communicator& c) {
    ParamSet p(base.spec());
    std::copy(base.data(), base.data() + base.size(), p.data());
    kernels::ThreadPool pool(1);
    SpAttention spa = make_sp_attention(scheme, attn_shape(p.spec()), pool, c);
    const SeqShard s = shard_of(seq, P, c.rank(), spa.placement);
    ModelGrad mg(p, *spa.attention, pool, std::max<int64_t>(1, s.size()), ckpt);
    ParamSet g(p.spec());
    const LossSum r = mg.step(s, 1.0f, g);
    double l = r.loss;
    c.allreduce(g.data(), size_t(g.size()), comm::ReduceOp::Sum);
    c.allreduce(&l, 1, comm::ReduceOp::Sum);
    if (c.rank() == 0) {
      std::lock_guard<std::mutex> lock(m);
      sum.assign(g.data(), g.data() + g.size());
      loss = l;
    }
  });
  return {loss, sum};
}

TEST(SpGrad, EverySchemeOnPRanksGivesTheOneRankGradients) {
  const Sequence seq = random_sequence(13, 40, 21);  // 13: not divisible by 2, 3 or 4
  const auto [l1, g1] = sp_grads("local", 1, seq, false);
  double gmax = 0;
  for (float v : g1) gmax = std::max(gmax, double(std::abs(v)));
  ASSERT_GT(gmax, 1e-3);
  for (const char* scheme : {"ring", "zigzag", "ulysses", "hybrid"})
    for (int P = 1; P <= 4; ++P)
      for (bool ckpt : {false, true}) {
        // hybrid: U x R with both above 1 where P allows (2x2), else a degenerate one
        // (1x1, 2x1, 1x3) that still runs the exchange and the ring code.
        const std::string name = std::string(scheme) != "hybrid" ? scheme
                                 : P == 4                        ? "hybrid:2x2"
                                 : P == 3                        ? "hybrid:1x3"
                                                                 : "hybrid:" + std::to_string(P) + "x1";
        SCOPED_TRACE(name + " P=" + std::to_string(P) + (ckpt ? " checkpointed" : ""));
        const auto [l, g] = sp_grads(name, P, seq, ckpt);
        EXPECT_NEAR(l, l1, 1e-5 * std::abs(l1));
        double worst = 0;
        for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(double(g[i]) - g1[i]));
        EXPECT_LT(worst / gmax, 1e-4);
      }
}

TEST(SpGrad, ShorterSequencesThanRanksLeaveSomeRanksEmpty) {
  const Sequence seq = random_sequence(3, 40, 4);
  const auto [l1, g1] = sp_grads("local", 1, seq, false);
  // zigzag: 8 chunks of 3 tokens; the others: contiguous shards, the last rank empty.
  for (const char* scheme : {"zigzag", "ring", "ulysses", "hybrid:2x2"}) {
    SCOPED_TRACE(scheme);
    const auto [l, g] = sp_grads(scheme, 4, seq, false);
    EXPECT_NEAR(l, l1, 1e-5 * std::abs(l1));
    double gmax = 0, worst = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      gmax = std::max(gmax, double(std::abs(g1[i])));
      worst = std::max(worst, std::abs(double(g[i]) - g1[i]));
    }
    EXPECT_LT(worst / gmax, 1e-4);
  }
}

TEST(SpGrad, TwentyStepsOnPRanksGiveTheOneRankLosses) {
  TrainConfig c;
  c.preset = "tiny";
  c.task = "passkey";
  c.ctx = 30;
  c.batch = 2;
  c.steps = 20;
  c.lr = 3e-3f;
  c.warmup = 2;
  c.threads = 1;
  c.eval_examples = 4;
  c.quiet = true;
  auto run = [](TrainConfig x, int P) {
    std::vector<double> losses;
    std::mutex m;
    comm::run_in_process(P, [&](comm::Communicator& w) {
      const TrainSummary s = run_training(x, w);
      if (w.rank() == 0) {
        std::lock_guard<std::mutex> lock(m);
        for (const auto& st : s.steps) losses.push_back(st.loss);
      }
    });
    return losses;
  };
  const auto one = run(c, 1);
  ASSERT_EQ(one.size(), 20u);
  for (const auto& [sp, P, dp] : {std::tuple{"zigzag", 3, 1}, std::tuple{"ring", 2, 1},
                                  std::tuple{"zigzag", 4, 2}, std::tuple{"ulysses", 3, 1},
                                  std::tuple{"hybrid:2x2", 4, 1}, std::tuple{"ulysses", 4, 2}}) {
    SCOPED_TRACE(std::string(sp) + " P=" + std::to_string(P) + " dp=" + std::to_string(dp));
    TrainConfig x = c;
    x.sp = sp;
    x.dp = dp;
    // Data parallelism: the groups split the step's sequences, so a step sees the same ones.
    x.batch = c.batch / dp;
    const auto got = run(x, P);
    ASSERT_EQ(got.size(), one.size());
    for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(got[i], one[i], 1e-4) << "step " << i + 1;
  }
}

}  // namespace
}  // namespace tandem::train
