#pragma once
// Per-layer KV cache: for each layer, K and V rows [capacity][kv_dim] (kv_dim = G*d),
// plus the global position of every stored token (positions travel with tokens so
// attention can mask by position, also when the sequence is split across ranks).
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tandem {

class KVCache {
 public:
  KVCache() = default;
  // Reserves memory for `capacity` tokens; throws Error(Resource) if it cannot.
  KVCache(int64_t n_layer, int64_t capacity, int64_t kv_dim);

  int64_t n_layer() const { return n_layer_; }
  int64_t capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  int64_t size() const { return size_; }

  // Appends m token slots with the given positions and returns the first slot's
  // index; the caller then fills their K/V rows in every layer. Throws
  // Error(Resource) when the cache is full.
  int64_t append(int64_t m, const int32_t* pos);
  // Drops every token from slot n on.
  void truncate(int64_t n);

  float* k(int64_t layer, int64_t slot) { return k_.data() + index(layer, slot); }
  float* v(int64_t layer, int64_t slot) { return v_.data() + index(layer, slot); }
  const float* k(int64_t layer, int64_t slot) const { return k_.data() + index(layer, slot); }
  const float* v(int64_t layer, int64_t slot) const { return v_.data() + index(layer, slot); }
  const int32_t* positions() const { return pos_.data(); }

  // Bytes held for K and V (all layers, full capacity).
  size_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }

 private:
  size_t index(int64_t layer, int64_t slot) const {
    return size_t((layer * capacity_ + slot) * kv_dim_);
  }
  int64_t n_layer_ = 0, capacity_ = 0, kv_dim_ = 0, size_ = 0;
  std::vector<float> k_, v_;
  std::vector<int32_t> pos_;
};

}  // namespace tandem
