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
