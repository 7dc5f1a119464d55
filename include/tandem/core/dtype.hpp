#pragma once
// Element types of tensors, with GGUF/ggml type ids and block layouts.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace tandem {

// Values are the GGUF type ids.
enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  BF16 = 30,
};

// Block layouts (32 values per block, little-endian F16 scale first):
//   Q8_0: { uint16 d; int8 qs[32]; }          value j = d * qs[j]
//   Q4_0: { uint16 d; uint8 qs[16]; }         value j = d * ((qs[j] & 15) - 8),
//                                             value j+16 = d * ((qs[j] >> 4) - 8)
inline constexpr int kQBlock = 32;
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQBlock];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQBlock / 2];
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18);

// Row conversions of one type: n values (a multiple of its block size) between its
// encoding and f32, by the rules documented in quant_rows.hpp.
using RowToF32 = void (*)(const void* src, float* dst, int64_t n);
using RowFromF32 = void (*)(const float* src, void* dst, int64_t n);

// The traits of a type: one entry per DType in the table of src/core/dtype.cpp, which
// also lists what adding a weight type takes.
struct DTypeInfo {
  DType type;
  std::string_view name;   // "f32", "q4_0", ...
  int block_size;          // values per block (1 for plain types)
  size_t block_bytes;      // bytes per block
  bool matrix;             // may be a weight matrix (every kernels table has its tile)
  RowToF32 to_f32;         // null for types without a row encoding (I8, I16, I32)
  RowFromF32 from_f32;     // null where to_f32 is
  uint32_t file_type;      // GGUF general.file_type of a model whose matrices are all this type
};

// Every type tandem knows, in table order (the matrix types first, in the order
// messages list them).
std::span<const DTypeInfo> dtype_table();
// nullopt for a type id tandem does not know.
std::optional<DTypeInfo> dtype_info(uint32_t gguf_type);
const DTypeInfo& info(DType t);
std::string_view dtype_name(DType t);
// Parses a type name of the table ("f32", "q4_0", ...; case-insensitive).
std::optional<DType> parse_dtype(std::string_view name);
// Bytes of n values of type t; n must be a multiple of the block size.
size_t row_bytes(DType t, int64_t n);
// The names of the matrix types in table order, joined by ", " ("f32, f16, ...").
std::string matrix_type_names();

}  // namespace tandem
