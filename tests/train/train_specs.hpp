#pragma once
// Small Llama-shaped models with grouped KV heads, and a short passkey run of the tiny
// preset on one rank, for the training tests.
#include "tandem/comm/in_process.hpp"
#include "tandem/model/synth.hpp"
#include "tandem/train/trainer.hpp"

namespace tandem::train::test {

inline SynthSpec gqa_llama(int64_t embd, int64_t layers, int64_t ff, int64_t vocab) {
  SynthSpec s;
  s.arch = "llama";
  s.n_embd = embd;
  s.n_layer = layers;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_ff = ff;
  s.n_vocab = vocab;
  s.type = DType::F32;
  return s;
}

inline TrainConfig tiny_passkey(int64_t steps) {
  TrainConfig c;
  c.preset = "tiny";
  c.task = "passkey";
  c.ctx = 32;
  c.batch = 2;
  c.steps = steps;
  c.lr = 3e-3f;
  c.warmup = 2;
  c.threads = 2;
  c.eval_examples = 8;
  c.quiet = true;
  return c;
}

inline TrainSummary train1(const TrainConfig& c) {
  auto world = comm::in_process_single();
  return run_training(c, *world);
}

}  // namespace tandem::train::test
