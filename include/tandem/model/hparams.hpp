#pragma once
// Model shape read from GGUF metadata. Shape vocabulary: V vocab, D model dim,
// L layers, H query heads, G KV heads, d head dim, F FFN dim.
#include <cstdint>
#include <string>
#include <vector>

namespace tandem::gguf {
class File;
}

namespace tandem {

struct HParams {
  std::string arch;        // one of supported_arch_names()
  int64_t n_vocab = 0;     // V
  int64_t n_embd = 0;      // D
  int64_t n_layer = 0;     // L
  int64_t n_head = 0;      // H
  int64_t n_head_kv = 0;   // G
  int64_t head_dim = 0;    // d (attention.key_length; D/H without it)
  int64_t n_ff = 0;        // F
  int64_t n_rot = 0;       // rotary dims per head (<= d, even)
  int64_t n_ctx_train = 0; // context length the model was trained for
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // linear rope scaling: 1 / rope.scaling.factor
  float rms_eps = 1e-5f;

  // What the architecture does beyond the Llama block (set from `arch`).
  bool rope_neox = false;    // rotary pairs (x[i], x[i + n_rot/2]), not (x[2i], x[2i+1])
  bool qk_norm = false;      // per-head RMSNorm of Q and K after the projections, before rope
  bool post_norms = false;   // RMSNorm of the attention and FFN outputs before each residual add
  bool gelu_ffn = false;     // gated FFN with GELU (tanh approximation) instead of SiLU
  bool embed_scale = false;  // embeddings scaled by sqrt(D)
  // How the architecture's converter writes the block (what a synthetic model of it
  // holds; the loader reads either layout): blk.N.attn_qkv ([(H+2G)d][D], Q rows then K
  // then V) and a fused blk.N.ffn_up ([2F][D], gate rows then up) instead of separate
  // attn_q/k/v and ffn_gate/ffn_up.
  bool fused_layout = false;
  bool tied_embedding = false;  // no output.weight: the output is the embedding (gemma2, gemma3)
  // Query scale of the attention scores (0: 1/sqrt(d)). gemma2's and gemma3's 27B models
  // (46 and 62 layers) scale by 1/sqrt(D/H), D/H differing from d there; no key says so.
  float attn_scale = 0.0f;
  float attn_softcap = 0.0f;   // attention scores s -> c*tanh(s/c) (0: none)
  float final_softcap = 0.0f;  // logits likewise
  // Sliding-window layers: a local layer's query at position p sees keys at positions
  // (p - sliding_window, p]; local_layers[l] != 0 marks them ([L], empty: none local).
  int64_t sliding_window = 0;
  std::vector<uint8_t> local_layers;
  int swa_period = 0;  // the architecture's pattern: period - 1 local layers, then a global one
  float rope_freq_base_local = 10000.0f;  // rotary base and scale of the local layers
  float rope_freq_scale_local = 1.0f;

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
  float query_scale() const;  // attn_scale, or 1/sqrt(d) without one
  bool layer_local(int64_t l) const {
    return size_t(l) < local_layers.size() && local_layers[size_t(l)] != 0;
  }
  // The attention window of layer l (0: the whole causal prefix).
  int64_t layer_window(int64_t l) const { return layer_local(l) ? sliding_window : 0; }

  // Reads "<arch>.*" keys; throws Error(BadInput) naming the file and key (an
  // architecture, key value or rope scaling tandem does not run is refused by name).
  static HParams from_gguf(const gguf::File& f);
  // Sets the architecture's traits (the flags above, defaults of its keys) for `arch`;
  // throws Error(BadInput) prefixed by `where` when tandem does not run it.
  void set_arch(const std::string& a, const std::string& where);
  // Checks internal consistency (G divides H, n_rot even and <= d, sizes > 0 and
  // within limits); throws Error(BadInput) prefixed by `where`.
  void validate(const std::string& where) const;
};

// Architectures tandem runs, and their names joined by ", " (for messages).
bool supported_arch(const std::string& arch);
std::string supported_arch_names();

// Whether layer l of an architecture that alternates sliding-window layers every
// `period` layers is local (period - 1 local layers, then one global); period 0: none.
bool local_layer_of_period(int64_t l, int period);

}  // namespace tandem
