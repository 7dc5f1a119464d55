#pragma once
// The weights of a model being trained: a Llama-architecture model (model/synth.hpp's
// tensors and names) held as f32 in one contiguous buffer, so that the optimizer, the
// gradient all-reduce and the checkpoint each see one array. Gradients and the
// optimizer's moments are ParamSets of the same layout. Shapes: V vocab, D model dim,
// L layers, H query heads, G KV heads, d head dim, F FFN dim.
#include <cstdint>
#include <string>
#include <vector>

#include "tandem/core/tensor.hpp"
#include "tandem/model/synth.hpp"

namespace tandem::train {

class ParamSet {
 public:
  // Zeros, laid out as synthetic_tensors(spec) (spec.arch must be "llama": the block the
  // trainer has backward passes for).
  explicit ParamSet(const SynthSpec& spec);

  // Floats a ParamSet of spec holds (without making one).
  static int64_t floats_of(const SynthSpec& spec);

  const SynthSpec& spec() const { return spec_; }
  const std::vector<SynthTensor>& tensors() const { return tensors_; }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  int64_t size() const { return int64_t(data_.size()); }

  // The tensor's values (throws Error(Internal) for an unknown name).
  float* find(const std::string& name);
  const float* find(const std::string& name) const;

  // The floats [first, first + n) a tensor occupies, its padding included: the spans of
  // all tensors tile the buffer (a gradient's all-reduce starts on spans that are final).
  struct Span {
    int64_t first = 0, n = 0;
  };
  Span span(const std::string& name) const;
  std::vector<Span> layer_spans(int64_t l) const;

  struct Layer {
    float *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *gate, *up, *down;
  };
  Layer layer(int64_t l);
  float* tok_embd() { return find("token_embd.weight"); }
  float* output_norm() { return find("output_norm.weight"); }
  float* output() { return find("output.weight"); }

 private:
  SynthSpec spec_;
  std::vector<SynthTensor> tensors_;
  std::vector<size_t> offsets_;
  std::vector<float> data_;
};

// A dense f32 weight view of rows x cols values at p, for kernels::matmul.
MatrixView f32_matrix(const float* p, int64_t rows, int64_t cols);

// The spec of a model trained from scratch: the preset's shape (tiny, small), f32, llama,
// with the tokenizer and vocabulary size of vocab_path when given, else V = n_vocab and no
// tokenizer.
SynthSpec preset_spec(const std::string& preset, int64_t n_vocab, const std::string& vocab_path);

// The spec of a GGUF model to continue training from; throws Error(BadInput) naming the
// file and the feature when the model is not a plain Llama block (biases, QK norms,
// post-norms, soft-capping, sliding windows, tied or fused weights, rope scaling).
SynthSpec spec_of_model(const std::string& path);

// Initial weights: every matrix N(0, 0.02^2) from the generator stream of its name and
// spec.seed (the same values `make-model` writes), every norm weight 1.
void init_params(ParamSet& p);
// The weights of a GGUF model (any weight type, dequantized); its shape must be p's.
void load_params(ParamSet& p, const std::string& path);
// Writes p as a GGUF model (f32 tensors, the spec's metadata and tokenizer), atomically.
void save_params(const ParamSet& p, const std::string& path);

}  // namespace tandem::train
