#pragma once
// Static activation plan: every intermediate buffer of a forward pass gets a fixed
// offset in one arena, computed once per shape (batch size, phase) and reused every step.
//
// A buffer is live on the steps [first_use, last_use] (inclusive): it is written at
// first_use and last read at last_use. Two buffers whose live intervals intersect never
// share a byte, with one exception: an op that may write its output over its input
// (element-wise ops, RMSNorm, RoPE) sets the output's in_place_of to the input; the hint
// is honored when the input dies at the step the output is born (input.last_use ==
// output.first_use, input.first_use < output.first_use), the output's aligned size fits
// in the input's, and no other buffer has claimed that input already (the first claimant
// in index order wins). The output then takes the start of the input's range; the rest of
// the input's range is freed when the input dies.
//
// Algorithm: a walk over steps in execution order (like a runtime allocator replayed
// ahead of time). At each step, buffers that died at an earlier step return their ranges
// to a free list (coalesced with neighbours); then the buffers born at the step are
// placed: in-place claimants first (index order), then the rest by size descending (ties:
// index), each at the best-fitting free range (smallest that fits, lowest offset on a
// tie) or, when none fits, at the end of the arena (extending a free range that touches
// the end). Execution order was picked over a global size-descending order because it
// makes every legal in-place hint succeed: the input's range is held until the output
// claims it, so nothing else can have taken it. Offsets and sizes are multiples of the
// alignment (64 bytes by default).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace tandem {

struct BufferSpec {
  size_t bytes = 0;
  int32_t first_use = 0;     // step that writes it first
  int32_t last_use = 0;      // last step that reads it (>= first_use)
  int32_t in_place_of = -1;  // a buffer whose bytes this one may take over, -1 for none
};

struct ActivationPlan {
  std::vector<size_t> offsets;       // per buffer, in the arena (0 for empty buffers)
  std::vector<int32_t> in_place_of;  // per buffer: the honored hint, -1 where none
  size_t alignment = 64;
  size_t arena_bytes = 0;      // peak: the arena size the plan needs
  size_t unplanned_bytes = 0;  // sum of the aligned sizes (one allocation per buffer)
  size_t live_bytes_max = 0;   // max over steps of the aligned bytes live at once: a lower
                               // bound for any plan (in-place pairs counted once)
};

// Throws Error(BadInput) for a spec with last_use < first_use or an in_place_of that is
// not another buffer's index, or an alignment that is not a power of two.
ActivationPlan plan_activations(std::span<const BufferSpec> specs, size_t alignment = 64);

// The memory of one plan: arena_bytes bytes aligned to the plan's alignment.
class ActivationArena {
 public:
  ActivationArena() = default;
  // Throws Error(Resource) when the memory cannot be allocated.
  explicit ActivationArena(const ActivationPlan& plan);

  std::byte* data() { return mem_.get(); }
  size_t bytes() const { return bytes_; }
  std::byte* buffer(const ActivationPlan& plan, size_t i) { return mem_.get() + plan.offsets[i]; }

 private:
  struct Free {
    size_t alignment;  // no initializer: keeps Free default-constructible inside the class
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte[], Free> mem_;
  size_t bytes_ = 0;
};

}  // namespace tandem
