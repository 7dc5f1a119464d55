#pragma once
// Non-owning views of tensor data shared by every module.
#include <cstddef>
#include <cstdint>

#include "tandem/core/dtype.hpp"

namespace tandem {

// A matrix, row-major [rows][cols] (GGUF dims {cols, rows}); rows of any DType with
// cols a multiple of the type's block size; row r starts at data + r * row_stride bytes.
struct MatrixView {
  DType type = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  size_t row_stride = 0;
  // Optional copy of the weights repacked at load for the kernels in use
  // (kernels::pack_weight, laid out by the runtime; packed_layout names the layout, 0 =
  // none; packed_bytes its size). data stays valid and is what everything else
  // (reference kernels, get_rows) reads.
  const void* packed = nullptr;
  int packed_layout = 0;
  size_t packed_bytes = 0;

  const uint8_t* row(int64_t r) const { return static_cast<const uint8_t*>(data) + r * row_stride; }
  size_t nbytes() const { return size_t(rows) * row_stride; }
};

}  // namespace tandem
