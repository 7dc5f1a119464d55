#pragma once
// Model shapes for the cost model: the few numbers of a Llama-family decoder that set its
// FLOPs, weight bytes and KV-cache bytes. Vocabulary: L layers, D model dim, H query heads,
// G KV heads, d head dim, F FFN dim, V vocab.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::analysis {

struct ModelShape {
  std::string name;
  int64_t n_layer = 0;    // L
  int64_t n_embd = 0;     // D
  int64_t n_head = 0;     // H
  int64_t n_head_kv = 0;  // G
  int64_t head_dim = 0;   // d
  int64_t n_ff = 0;       // F
  int64_t n_vocab = 0;    // V
  bool tied_output = false;  // output projection shares the token-embedding matrix

  // Weights of one layer's matrix products: Wq (D x H*d), Wk and Wv (D x G*d each),
  // Wo (H*d x D), and the SwiGLU FFN's gate, up (D x F each) and down (F x D).
  int64_t layer_matmul_params() const;
  // Every weight: L layers (matrices + 2 RMSNorm vectors of D), the token embedding
  // (V x D), the output projection (V x D unless tied) and the final norm (D).
  int64_t params() const;
  // Throws Error(BadInput) prefixed by `where` when a size is not positive or G does not
  // divide H.
  void validate(const std::string& where) const;
};

// Published architectures and the synthetic presets, by name (see names_of_shapes()).
std::optional<ModelShape> named_shape(std::string_view name);
const std::vector<std::string>& names_of_shapes();

// A GGUF file's shape, and the type that holds most of its weight bytes ("f32", "f16",
// "bf16", "q8_0", "q4_0"). Throws Error(BadInput) naming the file.
struct GgufShape {
  ModelShape shape;
  std::string weight_dtype;
};
GgufShape shape_from_gguf(const std::string& path);

}  // namespace tandem::analysis
