#pragma once
// Memory one rank needs, computed before anything large is allocated, so a run that
// would not fit a budget (--max-memory) is refused up front.
#include <cstdint>
#include <string>

#include "tandem/model/model.hpp"

namespace tandem {

// What the memory estimate needs of a model, read from the GGUF metadata alone (the file
// is mapped, not read, and no weight is touched).
struct ModelInfo {
  std::string path;
  HParams hparams;
  uint64_t weight_bytes = 0;  // the model file's size: what a process holds of weights at most
  static ModelInfo read(const std::string& path);
  static ModelInfo of(const Model& model);
};

struct MemoryEstimate {
  uint64_t weights = 0;      // the mapped model file (every rank holds all weights)
  uint64_t kv = 0;           // K and V of cache_tokens tokens, all layers
  uint64_t activations = 0;  // the engine's buffers for step_tokens tokens at once
  uint64_t workspace = 0;    // the attention strategy's buffers
  uint64_t tokens = 0;       // the prompt's ids and this rank's ids and positions
  uint64_t logits = 0;       // rows of logits the command holds on this rank
  // The process's resident set measured before the run allocates (program, libraries,
  // MPI runtime, thread stacks): a budget holds it too. 0 where not measured.
  uint64_t baseline = 0;
  // What no column names: allocator slack, compiled graphs, page tables, small buffers
  // (measured at 0.5 to 3 MiB per rank on the tiny and small presets; kSlack).
  uint64_t slack = 0;
  static constexpr uint64_t kSlack = 4ull << 20;
  uint64_t total() const {
    return baseline + weights + kv + activations + workspace + tokens + logits + slack;
  }
  // "1.2 GiB (baseline ... measured, weights ..., KV ..., activations ..., workspace ...,
  // tokens ..., logits ...)"
  std::string describe() const;
};

// Engine activation bytes for a step of m tokens (with one row of logits).
uint64_t activation_bytes(const HParams& h, int64_t m);
// KV cache bytes for n tokens (rows of kv_type: f32 or q8_0; whole pages of page_tokens
// when paged).
uint64_t kv_bytes(const HParams& h, int64_t n, DType kv_type = DType::F32, int64_t page_tokens = 0);

MemoryEstimate estimate_memory(const ModelInfo& model, int64_t step_tokens, int64_t cache_tokens,
                               uint64_t workspace, DType kv_type = DType::F32,
                               int64_t page_tokens = 0);

// Throws Error(Resource) "<who>: needs X (...) but --max-memory is Y" when over budget;
// budget 0 means no limit.
void check_memory_budget(const MemoryEstimate& need, uint64_t budget, const std::string& who);

}  // namespace tandem
