#include "tandem/core/dtype.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include "tandem/core/error.hpp"

namespace tandem {
namespace {
constexpr std::array<DTypeInfo, 8> kTypes{{
    {DType::F32, "f32", 1, 4},
    {DType::F16, "f16", 1, 2},
    {DType::Q4_0, "q4_0", kQBlock, sizeof(BlockQ4_0)},
    {DType::Q8_0, "q8_0", kQBlock, sizeof(BlockQ8_0)},
    {DType::I8, "i8", 1, 1},
    {DType::I16, "i16", 1, 2},
    {DType::I32, "i32", 1, 4},
    {DType::BF16, "bf16", 1, 2},
}};
}  // namespace

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

}  // namespace tandem
