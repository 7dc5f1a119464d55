#pragma once
// A 64-byte aligned buffer kept for its owner's life (the kernels keep one per thread and
// slot, thread_local), grown as needed; growing frees the old storage before taking the new,
// so the old and the new are never held at once.
#include <cstddef>
#include <cstdlib>

#include "tandem/core/error.hpp"

namespace tandem {

class AlignedScratch {
 public:
  AlignedScratch() = default;
  AlignedScratch(const AlignedScratch&) = delete;
  AlignedScratch& operator=(const AlignedScratch&) = delete;
  ~AlignedScratch() { std::free(p_); }

  // At least `bytes` bytes; the contents are not kept when it grows.
  void* get(size_t bytes) {
    if (bytes_ < bytes) {
      std::free(p_);
      p_ = nullptr;
      bytes_ = 0;
      p_ = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
      TD_CHECK(p_);
      bytes_ = bytes;
    }
    return p_;
  }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace tandem
