#pragma once
// Synthetic test models (tests linked with the model module).
#include <string>

#include "support/test_paths.hpp"
#include "tandem/model/synth.hpp"

namespace tandem::test {

// Writes a synthetic model of shape s to temp_dir()/name.gguf and returns its path.
inline std::string write_test_model(const std::string& name, const SynthSpec& s) {
  const std::string path = temp_dir() + "/" + name + ".gguf";
  write_synthetic_model(s, path);
  return path;
}

// A tiny F32 model of architecture `arch` (32 wide, 4 query heads sharing 2 KV heads,
// 2 layers) for the architecture tests; callers adjust what their test needs.
inline SynthSpec tiny_arch_spec(const std::string& arch, int64_t n_ff, int64_t n_vocab,
                                uint64_t seed = SynthSpec{}.seed) {
  SynthSpec s;
  s.arch = arch;
  s.n_embd = 32;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_ff = n_ff;
  s.n_layer = 2;
  s.n_vocab = n_vocab;
  s.type = DType::F32;
  s.seed = seed;
  return s;
}

}  // namespace tandem::test
