#pragma once
// A loaded model of one of the architectures HParams knows: GGUF file (memory-mapped),
// shape, weights (views into the mapping), and tokenizer when the file has one.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tandem/core/tensor.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/hparams.hpp"
#include "tandem/model/tokenizer.hpp"

namespace tandem {

// One block's weights. A file that fuses Q/K/V (blk.N.attn_qkv) or gate/up (a [2F][D]
// blk.N.ffn_up) is bound as row ranges of the one matrix: wq, wk, wv (and w_gate, w_up)
// are then views into it, not copies.
struct LayerWeights {
  const float* attn_norm = nullptr;  // [D]
  MatrixView wq, wk, wv;             // [H*d][D], [G*d][D], [G*d][D]
  const float* bq = nullptr;         // optional biases (qwen2): [H*d], [G*d], [G*d]
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* q_norm = nullptr;     // per-head RMSNorm weights [d] (HParams::qk_norm)
  const float* k_norm = nullptr;
  MatrixView wo;                     // [D][H*d]
  const float* post_attn_norm = nullptr;  // [D] (HParams::post_norms)
  const float* ffn_norm = nullptr;   // [D]
  MatrixView w_gate, w_up;           // [F][D]
  MatrixView w_down;                 // [D][F]
  const float* post_ffn_norm = nullptr;   // [D] (HParams::post_norms)
};

class Model {
 public:
  // Opens and validates a model file; throws Error(BadInput) naming the file and the
  // fault (missing tensor, wrong shape or type, bad metadata, a tensor the architecture
  // does not use). Weights are views of the
  // file's mapping as it stores them; where the kernels want them laid out is the
  // runtime's decision (runtime/weight_layout.hpp, runtime::load_model).
  static std::unique_ptr<Model> load(const std::string& path);

  // For a layout step that copies weights elsewhere: the matrices read per token (every
  // layer's, then the output; a tied output is the embedding's view, left as it is)...
  std::vector<MatrixView*> matrices();
  // ...the model takes ownership of an arena (allocated with std::aligned_alloc) that
  // holds copies of matrix_bytes of matrices and other_bytes of the rest (norm and bias
  // vectors) in held_bytes of resident memory, and drops a range of the file's mapping,
  // or all of it but one range, from the process once what lies there has a copy (a
  // later read faults it in again from the file).
  void adopt_weight_copies(uint8_t* arena, size_t matrix_bytes, size_t other_bytes,
                           size_t held_bytes);
  void drop_file_range(const void* data, size_t bytes);
  // The whole mapping but [keep, keep + keep_bytes) (rounded out to pages).
  void drop_mapping_except(const void* keep, size_t keep_bytes);

  // The file's metadata, less the tokenizer's arrays (tokenizer() holds them).
  const gguf::File& file() const { return file_; }
  const HParams& hparams() const { return hp_; }
  // nullptr when the file has no tokenizer metadata.
  const Tokenizer* tokenizer() const { return tokenizer_ ? &*tokenizer_ : nullptr; }

  MatrixView tok_embd;             // [V][D]
  const float* rope_freqs = nullptr;  // optional [n_rot/2] divisors of the rotary frequencies
  const float* output_norm = nullptr;
  MatrixView output;               // [V][D] (the embedding when output.weight is absent)
  bool output_tied = false;
  std::vector<LayerWeights> layers;

  // Bytes of weights read per token in decode (every matrix once, plus norms; a matrix
  // with a packed copy counts that copy, which is what decode reads).
  size_t weight_bytes() const;
  // Bytes of the matrices copied into weight arenas after loading (the runtime's layout
  // step, runtime/weight_layout.hpp: packed for the kernels, or copied as they are; 0
  // when nothing was copied, e.g. TANDEM_NO_REPACK=1).
  size_t packed_bytes() const { return copied_bytes_; }
  // Bytes of the file's mapping dropped by drop_mapping_except.
  size_t dropped_bytes() const { return dropped_bytes_; }
  // Weight memory of this process: the file's mapping's resident pages (or, where those
  // cannot be read, the mapping less what was dropped), plus the
  // arena's resident pages (a tied embedding whose output is packed: the mapping's and the
  // packed copy).
  size_t resident_weight_bytes() const;

 private:
  Model(gguf::File f, HParams hp) : file_(std::move(f)), hp_(std::move(hp)) {}
  void bind_weights();

  struct FreeAligned {
    void operator()(uint8_t* p) const;
  };
  std::vector<std::unique_ptr<uint8_t[], FreeAligned>> weight_arenas_;
  size_t copied_bytes_ = 0;  // matrices
  size_t arena_held_bytes_ = 0;
  size_t dropped_bytes_ = 0;

  gguf::File file_;
  HParams hp_;
  std::optional<Tokenizer> tokenizer_;
};

}  // namespace tandem
