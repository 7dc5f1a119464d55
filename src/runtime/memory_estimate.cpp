#include "tandem/runtime/memory_estimate.hpp"

#include <fmt/format.h>

#include "tandem/core/error.hpp"
#include "tandem/core/size.hpp"

namespace tandem {

std::string MemoryEstimate::describe() const {
  return fmt::format("{} ({}weights {}, KV {}, activations {}, workspace {}, tokens {}, logits {}, "
                     "slack {})",
                     format_size(double(total())),
                     baseline ? fmt::format("baseline {} measured, ", format_size(double(baseline)))
                              : std::string(),
                     format_size(double(weights)),
                     format_size(double(kv)), format_size(double(activations)),
                     format_size(double(workspace)), format_size(double(tokens)),
                     format_size(double(logits)), format_size(double(slack)));
}

uint64_t activation_bytes(const HParams& h, int64_t m) {
  // x, h [m][D]; q, attention out [m][H*d]; k, v [m][G*d]; gate, up [m][F]; logits [V].
  const int64_t per_token = 2 * h.n_embd + 2 * h.q_dim() + 2 * h.kv_dim() + 2 * h.n_ff;
  return uint64_t(m * per_token + h.n_vocab) * sizeof(float);
}

uint64_t kv_bytes(const HParams& h, int64_t n, DType kv_type, int64_t page_tokens) {
  if (page_tokens > 0) n = (n + page_tokens - 1) / page_tokens * page_tokens;
  return uint64_t(2 * h.n_layer * n) * uint64_t(row_bytes(kv_type, h.kv_dim()));
}

ModelInfo ModelInfo::read(const std::string& path) {
  const gguf::File f = gguf::File::open(path);
  return ModelInfo{path, HParams::from_gguf(f), f.file_size()};
}

ModelInfo ModelInfo::of(const Model& model) {
  return ModelInfo{model.file().path(), model.hparams(), model.file().file_size()};
}

MemoryEstimate estimate_memory(const ModelInfo& model, int64_t step_tokens, int64_t cache_tokens,
                               uint64_t workspace, DType kv_type, int64_t page_tokens) {
  MemoryEstimate e;
  e.weights = model.weight_bytes;
  e.kv = kv_bytes(model.hparams, cache_tokens, kv_type, page_tokens);
  e.activations = activation_bytes(model.hparams, step_tokens);
  e.workspace = workspace;
  e.slack = MemoryEstimate::kSlack;
  return e;
}

void check_memory_budget(const MemoryEstimate& need, uint64_t budget, const std::string& who) {
  if (budget == 0 || need.total() <= budget) return;
  fail(ErrorKind::Resource, "{}: needs {} but --max-memory is {}", who, need.describe(),
       format_size(double(budget)));
}

}  // namespace tandem
