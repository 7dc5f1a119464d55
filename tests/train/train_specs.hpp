#pragma once
// Small Llama-shaped models with grouped KV heads for the training tests.
#include "tandem/model/synth.hpp"

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

}  // namespace tandem::train::test
