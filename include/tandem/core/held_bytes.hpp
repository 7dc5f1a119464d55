#pragma once
// The bytes a set of std::vectors holds (their capacity), for memory accounting of
// buffers that grow to the largest use.
#include <cstddef>
#include <vector>

namespace tandem {

template <class... T>
size_t held_bytes_of(const std::vector<T>&... v) {
  return (size_t{0} + ... + (v.capacity() * sizeof(T)));
}

}  // namespace tandem

namespace tandem {

// Grows v to at least n elements without keeping its contents: the old storage is freed
// before the new one is taken, so a scratch buffer's growth never holds both at once.
template <class T>
void grow_scratch(std::vector<T>& v, size_t n) {
  if (v.size() >= n) return;
  v = {};
  v.resize(n);
}

}  // namespace tandem
