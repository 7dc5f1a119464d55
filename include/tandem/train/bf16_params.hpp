#pragma once
// BF16 copies of the matrices of every layer (attn_q, attn_k, attn_v, attn_output,
// ffn_gate, ffn_up, ffn_down) for training with BF16 products (`tandem train --bf16`):
// ModelGrad reads them in the forward and for the gradient of the activations, while the
// f32 master weights, gradients and AdamW moments stay as they are. The trainer packs them
// from the master weights at the start (or resume) and after every optimizer step. The
// token embedding and the output head (fused with cross-entropy) stay f32.
#include <cstddef>
#include <unordered_map>

#include "tandem/kernels/bf16_matmul.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/train/params.hpp"

namespace tandem::train {

class Bf16Params {
 public:
  // Packs every layer matrix of p (which must outlive this: its matrices are found by
  // address).
  Bf16Params(const ParamSet& p, kernels::ThreadPool& pool);
  // Packs them again from p's current values (same storage).
  void pack(kernels::ThreadPool& pool);
  // The copy of the matrix whose f32 values start at w (a pointer into the ParamSet);
  // null for any other matrix.
  const kernels::Bf16Matrix* find(const float* w) const;
  // Bytes held by the copies.
  size_t bytes() const;
  // Bytes the copies of a model of spec hold on the path of kernels::bf16_products_fast().
  static size_t bytes_of(const SynthSpec& spec);
  // Whether the copies run on AVX-512 BF16 (else the portable path).
  bool fast() const;

 private:
  const ParamSet& p_;
  std::unordered_map<const float*, kernels::Bf16Matrix> mats_;
};

}  // namespace tandem::train
