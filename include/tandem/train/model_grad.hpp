#pragma once
// Forward and backward of the whole model over one sequence (this rank's shard of it):
// the loss of next-token prediction and the gradient of every weight. Token-local ops run
// on this rank's tokens; attention goes through a parallel::AttentionGrad, which may span
// ranks. Activations are kept per layer for the backward, or, with checkpoint_layers,
// only each layer's input, the layer being recomputed in the backward (compute for
// memory). Shapes: n tokens of this rank, D, H, G, d, F, V as in params.hpp.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "tandem/kernels/thread_pool.hpp"
#include "tandem/parallel/attention_grad.hpp"
#include "tandem/train/params.hpp"

namespace tandem::train {

class GradSink;
class Bf16Params;

// This rank's share of one sequence: its tokens, their next-token targets (-1: not counted
// in the loss) and global positions, in the order the rank holds them.
struct SeqShard {
  std::vector<int32_t> tokens, targets, pos;
  int64_t size() const { return int64_t(tokens.size()); }
};

struct LossSum {
  double loss = 0.0;     // sum of -log p(target) over counted tokens
  int64_t counted = 0;   // tokens with a target
  int64_t correct = 0;   // counted tokens whose target has the highest logit
};

// The attention shape of a model (H, G, d, scale 1/sqrt(d)).
parallel::AttnShape attn_shape(const SynthSpec& spec);

// Activation bytes ModelGrad holds for sequences of up to n tokens on a rank (its whole
// plan: saved activations, the backward's buffers and the loss head's logits block).
size_t activation_bytes(const SynthSpec& spec, int64_t n, bool checkpoint_layers);

class ModelGrad {
 public:
  // Buffers for shards of up to max_tokens tokens are made here, once.
  ModelGrad(ParamSet& params, parallel::AttentionGrad& attn, kernels::ThreadPool& pool,
            int64_t max_tokens, bool checkpoint_layers);
  ~ModelGrad();
  ModelGrad(const ModelGrad&) = delete;
  ModelGrad& operator=(const ModelGrad&) = delete;

  // Forward and backward of one shard: adds grad_scale * d(loss)/d(weight) to grads (same
  // layout as the params) and returns the loss of this rank's counted tokens. Every rank
  // of the attention's communicator calls it for its shard of the same sequence.
  // With a sink, each tensor's gradient is reported final (sink->ready) as soon as the
  // backward is done with it, and sink->progress() is called between the backward's ops
  // (grad_reduce.hpp): pass one for the step's last shard only.
  LossSum step(const SeqShard& s, float grad_scale, ParamSet& grads, GradSink* sink = nullptr);
  // The forward only: the loss of this rank's counted tokens.
  LossSum evaluate(const SeqShard& s);
  // With b set, the layers' matrix products (forward, dX and dW of wq wk wv wo gate up
  // down) run in BF16 on b's copies (kernels/bf16_matmul.hpp); null: f32 (the default).
  // The output head stays f32.
  void set_bf16(const Bf16Params* b);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::train
