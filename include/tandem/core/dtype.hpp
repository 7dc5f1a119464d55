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
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  IQ4_NL = 20,
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

// Further blocks of 32 (q the 4-bit code of a value: value j in the low nibble of
// qs[j], value j+16 in the high nibble of qs[j]; for the 5-bit types, bit j of the
// little-endian uint32 qh is the fifth bit of value j):
//   Q4_1:   { uint16 d; uint16 m; uint8 qs[16]; }             value = d * q + m
//   Q5_0:   { uint16 d; uint8 qh[4]; uint8 qs[16]; }          value = d * (q5 - 16)
//   Q5_1:   { uint16 d; uint16 m; uint8 qh[4]; uint8 qs[16]; } value = d * q5 + m
//   IQ4_NL: { uint16 d; uint8 qs[16]; }                       value = d * kIq4nlValues[q]
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[kQBlock / 2];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQBlock / 2];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQBlock / 2];
};
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[kQBlock / 2];
};
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};
static_assert(sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24 &&
              sizeof(BlockIQ4_NL) == 18);

// K-quants: super-blocks of 256 values (kKBlock) in sub-blocks of 16 or 32, with
// quantized per-sub-block scales (and minimums) under an F16 super-block scale. The
// exact bit layouts are documented with their row conversions (quant_rows_k.cpp).
inline constexpr int kKBlock = 256;
struct BlockQ2_K {
  uint8_t scales[16];  // per 16 values: low nibble scale, high nibble minimum
  uint8_t qs[64];      // 2-bit codes
  uint16_t d, dmin;
};
struct BlockQ3_K {
  uint8_t hmask[32];   // third bit of each code
  uint8_t qs[64];      // low 2 bits of each code
  uint8_t scales[12];  // 16 6-bit scales
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];  // 8 6-bit scales and 8 6-bit minimums
  uint8_t qs[128];     // 4-bit codes
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];      // fifth bit of each code
  uint8_t qs[128];     // low 4 bits of each code
};
struct BlockQ6_K {
  uint8_t ql[128];     // low 4 bits of each code
  uint8_t qh[64];      // high 2 bits of each code
  int8_t scales[16];   // per 16 values
  uint16_t d;
};
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

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
