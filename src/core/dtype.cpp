#include "tandem/core/dtype.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include "tandem/core/error.hpp"
#include "core/row_codecs.hpp"

namespace tandem {
namespace {
using namespace detail;

// The traits table: one entry per type. Matrix types first, in the order messages list
// them (matrix_type_names); lookups go by type or name, so the order has no other use.
//
// Adding a weight type (a GGUF type id tandem does not read yet):
//  1. Core: its DType (the GGUF id, dtype.hpp; below kernels' kTypeSlots, 64, which
//     holds every GGUF id so far) and its entry here: name, block size and
//     bytes, matrix = true, its row conversions to and from f32 (the scalar definition
//     of its encoding, in quant_rows.cpp, declared in core/row_codecs.hpp) and its GGUF
//     file_type code. Parsing and listing the type (model loading, make-model, the
//     synthetic model writer and its general.file_type), row byte counts (row_bytes),
//     the dequantizing paths (reference matmul, get_rows) and the planner's bytes per
//     parameter (block_bytes / block_size) follow from the entry.
//  2. Kernels: its tile (TileFn) in every instruction set's table (TypeKernels,
//     src/kernels/isa.hpp): a loader (Ld* in kernel_body.inc) written once against the
//     vector layer, plus any load primitive it needs in each simd_*.inc, and one add()
//     in make_table, which builds all three tables. Optional: integer tiles (8-bit
//     activations) and a packed layout with its tiles.
//  3. Tests: the kernels and row-conversion tests iterate this table (every matrix type
//     x every instruction set the CPU runs, against the scalar reference); a matrix
//     type without a tile in some kernels table fails them.
// Not derived from this table: a hardware profile's FLOP/s per type (profiles name the
// types they have rates for; others compute at the bf16 rate, analysis/plan/hardware.cpp).
constexpr DTypeInfo kTypes[] = {
    {DType::F32, "f32", 1, 4, true, &f32_row_to_f32, &f32_row_from_f32, 0},
    {DType::F16, "f16", 1, 2, true, &f16_row_to_f32, &f16_row_from_f32, 1},
    {DType::BF16, "bf16", 1, 2, true, &bf16_row_to_f32, &bf16_row_from_f32, 32},
    {DType::Q8_0, "q8_0", kQBlock, sizeof(BlockQ8_0), true, &q8_0_row_to_f32, &q8_0_row_from_f32, 7},
    {DType::Q4_0, "q4_0", kQBlock, sizeof(BlockQ4_0), true, &q4_0_row_to_f32, &q4_0_row_from_f32, 2},
    // Blocks of 32 (quant_rows_legacy.cpp): Q4_1, Q5_0, Q5_1, IQ4_NL.
    {DType::Q4_1, "q4_1", kQBlock, sizeof(BlockQ4_1), true, &q4_1_row_to_f32, &q4_1_row_from_f32, 3},
    {DType::Q5_0, "q5_0", kQBlock, sizeof(BlockQ5_0), true, &q5_0_row_to_f32, &q5_0_row_from_f32, 8},
    {DType::Q5_1, "q5_1", kQBlock, sizeof(BlockQ5_1), true, &q5_1_row_to_f32, &q5_1_row_from_f32, 9},
    {DType::IQ4_NL, "iq4_nl", kQBlock, sizeof(BlockIQ4_NL), true, &iq4_nl_row_to_f32,
     &iq4_nl_row_from_f32, 25},

    // K-quants (quant_rows_k.cpp): Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
    {DType::Q2_K, "q2_k", kKBlock, sizeof(BlockQ2_K), true, &q2_k_row_to_f32, &q2_k_row_from_f32, 10},
    {DType::Q3_K, "q3_k", kKBlock, sizeof(BlockQ3_K), true, &q3_k_row_to_f32, &q3_k_row_from_f32, 11},
    {DType::Q4_K, "q4_k", kKBlock, sizeof(BlockQ4_K), true, &q4_k_row_to_f32, &q4_k_row_from_f32, 14},
    {DType::Q5_K, "q5_k", kKBlock, sizeof(BlockQ5_K), true, &q5_k_row_to_f32, &q5_k_row_from_f32, 16},
    {DType::Q6_K, "q6_k", kKBlock, sizeof(BlockQ6_K), true, &q6_k_row_to_f32, &q6_k_row_from_f32, 18},

    {DType::I8, "i8", 1, 1, false, nullptr, nullptr, 0},
    {DType::I16, "i16", 1, 2, false, nullptr, nullptr, 0},
    {DType::I32, "i32", 1, 4, false, nullptr, nullptr, 0},
};
// That a type converts rows both ways or not at all, and that a matrix type converts them,
// is checked by DTypeTable.EntriesAreConsistent (not a static_assert: comparing function
// addresses with null is not a constant expression under -fsanitize=undefined).
}  // namespace

std::span<const DTypeInfo> dtype_table() { return kTypes; }

std::optional<DTypeInfo> dtype_info(uint32_t gguf_type) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == gguf_type) return t;
  return std::nullopt;
}

const DTypeInfo& info(DType t) {
  for (const auto& i : kTypes)
    if (i.type == t) return i;
  fail(ErrorKind::Internal, "unknown dtype {}", static_cast<uint32_t>(t));
}

std::string_view dtype_name(DType t) { return info(t).name; }

std::optional<DType> parse_dtype(std::string_view name) {
  std::string s(name);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& t : kTypes)
    if (t.name == s) return t.type;
  return std::nullopt;
}

size_t row_bytes(DType t, int64_t n) {
  const auto& i = info(t);
  TD_CHECK(n >= 0 && n % i.block_size == 0);
  return size_t(n / i.block_size) * i.block_bytes;
}

std::string matrix_type_names() {
  std::string s;
  for (const auto& t : kTypes)
    if (t.matrix) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

}  // namespace tandem
