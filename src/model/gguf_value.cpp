#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "tandem/model/gguf.hpp"

namespace tandem::gguf {

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "?";
}

bool Value::is_integer() const {
  return std::holds_alternative<uint64_t>(v) || std::holds_alternative<int64_t>(v);
}

std::optional<int64_t> Value::as_int() const {
  if (const auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return int64_t(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  return std::nullopt;
}

std::optional<double> Value::as_float() const {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&v)) return double(*u);
  if (const auto* i = std::get_if<int64_t>(&v)) return double(*i);
  return std::nullopt;
}

const std::string* Value::as_string() const { return std::get_if<std::string>(&v); }
const Array* Value::as_array() const { return std::get_if<Array>(&v); }

std::string Value::to_string(size_t max_items) const {
  if (const auto* u = std::get_if<uint64_t>(&v)) return fmt::format("{}", *u);
  if (const auto* i = std::get_if<int64_t>(&v)) return fmt::format("{}", *i);
  if (const auto* d = std::get_if<double>(&v)) return fmt::format("{:g}", *d);
  if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (const auto* s = std::get_if<std::string>(&v)) {
    std::string out = "\"";
    for (unsigned char c : *s) {
      if (c == '\n') out += "\\n";
      else if (c < 0x20) out += fmt::format("\\x{:02x}", c);
      else out += char(c);
      if (out.size() > 200) { out += "..."; break; }
    }
    return out + "\"";
  }
  const auto& a = std::get<Array>(v);
  std::string out = fmt::format("[{} x {}: ", a.items.size(), value_type_name(a.elem));
  for (size_t k = 0; k < a.items.size() && k < max_items; ++k) {
    if (k) out += ", ";
    out += a.items[k].to_string(max_items);
  }
  if (a.items.size() > max_items) out += ", ...";
  return out + "]";
}

int64_t TensorInfo::nelements() const {
  int64_t n = 1;
  for (auto d : ne) n *= d;
  return n;
}

}  // namespace tandem::gguf
