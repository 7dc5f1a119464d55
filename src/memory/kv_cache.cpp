#include "tandem/memory/kv_cache.hpp"

#include <new>

#include "tandem/core/error.hpp"

namespace tandem {

KVCache::KVCache(int64_t n_layer, int64_t capacity, int64_t kv_dim)
    : n_layer_(n_layer), capacity_(capacity), kv_dim_(kv_dim) {
  TD_CHECK(n_layer > 0 && capacity >= 0 && kv_dim > 0);
  const size_t n = size_t(n_layer) * size_t(capacity) * size_t(kv_dim);
  try {
    k_.resize(n);
    v_.resize(n);
    pos_.resize(size_t(capacity));
  } catch (const std::bad_alloc&) {
    fail(ErrorKind::Resource, "cannot allocate the KV cache: {} tokens need {} MiB", capacity,
         2 * n * sizeof(float) >> 20);
  }
}

int64_t KVCache::append(int64_t m, const int32_t* pos) {
  if (m < 0 || size_ + m > capacity_)
    fail(ErrorKind::Resource, "KV cache full: {} tokens stored, {} more requested, capacity {}",
         size_, m, capacity_);
  const int64_t start = size_;
  for (int64_t i = 0; i < m; ++i) pos_[size_t(start + i)] = pos[i];
  size_ += m;
  return start;
}

void KVCache::truncate(int64_t n) {
  TD_CHECK(n >= 0 && n <= size_);
  size_ = n;
}

}  // namespace tandem
