#pragma once
// Synthetic models with reproducible random weights (the generator of
// shared/models/README.md): every matrix N(0, 0.02^2) from a stream keyed by the seed
// and the tensor name, every norm weight 1.0; the tensors and keys each architecture's
// converter writes (supported_arch_names()).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tandem/core/dtype.hpp"

namespace tandem {

struct SynthSpec {
  std::string arch = "llama";
  int64_t n_embd = 288;        // D
  int64_t n_layer = 6;         // L
  int64_t n_head = 6;          // H
  int64_t n_head_kv = 6;       // G
  int64_t n_ff = 768;          // F
  int64_t n_ctx = 32768;
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  DType type = DType::F16;     // type of every matrix (norms stay F32)
  std::string recipe = {};     // or, when set, the types a quantization recipe picks per
                               // tensor (model/quant_recipe.hpp: "q4_k_m", ...)
  uint64_t seed = 1234;
  std::string vocab_path = {}; // GGUF file whose tokenizer.* keys are copied; or
  int64_t n_vocab = 0;         // with no vocab file: V tokens, no tokenizer metadata
  bool qkv_bias = false;       // Q/K/V biases (qwen2-style), N(0, 0.02^2)
  bool tied_output = false;    // omit output.weight (tied to token_embd; always for gemma2/3)
  int64_t head_dim = 0;        // d, written as attention.key_length/value_length (0: D/H)
  // Rope scaling: "" none; "linear:F" (rope.scaling.type linear, factor F); "llama3" (a
  // rope_freqs tensor of Llama 3.1's recipe: factor 8, low/high frequency factors 1 and 4,
  // original context 8192).
  std::string rope_scaling = {};
  int64_t sliding_window = 0;  // architectures with local layers (0: gemma2 4096, gemma3 1024)
  bool random_norms = false;   // norm weights 1 + N(0, 0.1^2) (tests) instead of 1.0
  float weight_scale = 1.0f;   // multiplies the matrices and biases (tests: peakier attention)
};

// The rope_freqs values of Llama 3.1's recipe for head dim n_rot and base `base`:
// [n_rot/2] divisors of the rotary frequencies.
std::vector<float> llama3_rope_factors(int64_t n_rot, float base);

// "tiny" or "small" (shapes in shared/models/README.md); throws Error(BadInput).
SynthSpec synth_preset(const std::string& name);

// Deterministic generator values: element i of the named tensor, as float32.
// fill_normal writes n values of the N(0, (0.02)^2) stream for `name`.
uint64_t synth_key(uint64_t seed, const std::string& tensor_name);
void fill_normal(uint64_t seed, const std::string& tensor_name, float* out, int64_t n);

// What writing the model takes: the bytes of its tensors in the file, and the most memory
// write_synthetic_model holds at once (every tensor as written, kept until the file is
// written, plus the float32 values of the largest one). Validates the spec as
// write_synthetic_model does (throws Error(BadInput)).
struct SynthFootprint {
  uint64_t file_bytes = 0;
  uint64_t peak_bytes = 0;
};
SynthFootprint synthetic_model_footprint(const SynthSpec& spec);

// The tensors a model of `spec` holds, in file order: name, [rows][cols] (rows 1 for a
// vector), and whether it is a matrix (of spec.type) or a vector (F32). Validates the spec
// as write_synthetic_model does.
struct SynthTensor {
  std::string name;
  int64_t rows = 0, cols = 0;
  bool matrix = false;
};
std::vector<SynthTensor> synthetic_tensors(const SynthSpec& spec);

// The f32 values of a named tensor: writes its n = rows*cols values to out, row-major.
using TensorValues = std::function<void(const std::string& name, float* out, int64_t n)>;

// Writes the model to `path` (GGUF v3). `progress(done, total)` is called after each
// tensor when set. Throws Error(BadInput) for a bad spec or vocab file.
void write_synthetic_model(const SynthSpec& spec, const std::string& path,
                           const std::function<void(int, int)>& progress = {});

// As write_synthetic_model, with every tensor's values taken from `values` (a trained
// model's weights) instead of the generator; with spec.type F32 they are kept exactly.
void write_model_values(const SynthSpec& spec, const std::string& path,
                        const TensorValues& values,
                        const std::function<void(int, int)>& progress = {});

}  // namespace tandem
