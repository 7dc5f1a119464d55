#pragma once
// Model shape read from GGUF metadata. Shape vocabulary: V vocab, D model dim,
// L layers, H query heads, G KV heads, d head dim, F FFN dim.
#include <cstdint>
#include <string>

namespace tandem::gguf {
class File;
}

namespace tandem {

struct HParams {
  std::string arch;        // "llama", "qwen2", "mistral"
  int64_t n_vocab = 0;     // V
  int64_t n_embd = 0;      // D
  int64_t n_layer = 0;     // L
  int64_t n_head = 0;      // H
  int64_t n_head_kv = 0;   // G
  int64_t head_dim = 0;    // d
  int64_t n_ff = 0;        // F
  int64_t n_rot = 0;       // rotary dims per head (<= d, even)
  int64_t n_ctx_train = 0; // context length the model was trained for
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }

  // Reads "<arch>.*" keys; throws Error(BadInput) naming the file and key.
  static HParams from_gguf(const gguf::File& f);
  // Checks internal consistency (G divides H, n_rot even and <= d, sizes > 0 and
  // within limits); throws Error(BadInput) prefixed by `where`.
  void validate(const std::string& where) const;
};

// Architectures tandem runs.
bool supported_arch(const std::string& arch);

}  // namespace tandem
