// A trained checkpoint is a model like any other: the inference engine loads it and its
// logits give the loss the trainer's own forward computes.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "tandem/comm/in_process.hpp"
#include "tandem/model/model.hpp"
#include "tandem/runtime/session.hpp"
#include "tandem/train/checkpoint.hpp"
#include "tandem/train/data.hpp"
#include "tandem/train/model_grad.hpp"
#include "tandem/train/trainer.hpp"

namespace tandem::train {
namespace {

namespace fs = std::filesystem;

TEST(CheckpointRuntime, TheEngineComputesTheTrainersLoss) {
  const std::string dir = (fs::temp_directory_path() / ("tandem_ckpt_rt_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  TrainConfig c;
  c.preset = "tiny";
  c.task = "passkey";
  c.ctx = 48;
  c.batch = 2;
  c.steps = 3;
  c.threads = 2;
  c.eval_examples = 2;
  c.quiet = true;
  c.out_dir = dir;
  {
    auto world = comm::in_process_single();
    run_training(c, *world);
  }
  const Sequence seq = passkey_source(c.ctx, c.seed, true)->get(0);

  // The trainer's forward on the checkpoint's weights.
  ParamSet p(spec_of_model(checkpoint_model_path(dir)));
  load_params(p, checkpoint_model_path(dir));
  kernels::ThreadPool pool(2);
  auto attn = parallel::make_local_attention_grad(attn_shape(p.spec()), pool);
  ModelGrad mg(p, *attn, pool, c.ctx, false);
  SeqShard s{seq.tokens, seq.targets, {}};
  for (int32_t i = 0; i < int32_t(c.ctx); ++i) s.pos.push_back(i);
  const LossSum mine = mg.evaluate(s);

  // The engine's logits of every position.
  auto model = std::shared_ptr<Model>(Model::load(checkpoint_model_path(dir)));
  SessionOptions so;
  so.threads = 2;
  Session session(model, so);
  PrefillOutput out = session.prefill(seq.tokens, c.ctx);
  const int64_t V = p.spec().n_vocab;
  ASSERT_EQ(int64_t(out.logits.size()), c.ctx * V);
  double loss = 0;
  for (int64_t t = 0; t < c.ctx; ++t) {
    if (seq.targets[size_t(t)] < 0) continue;
    const float* row = out.logits.data() + t * V;
    double mx = -INFINITY, z = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
    for (int64_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
    loss += std::log(z) + mx - double(row[seq.targets[size_t(t)]]);
  }
  EXPECT_EQ(mine.counted, kPasskeyDigits);
  EXPECT_NEAR(loss, mine.loss, 1e-3 * std::abs(mine.loss));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tandem::train
