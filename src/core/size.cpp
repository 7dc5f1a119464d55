#include "tandem/core/size.hpp"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>

namespace tandem {

std::optional<uint64_t> parse_size(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + i, value);
  if (ec != std::errc() || end != text.data() + i || !std::isfinite(value)) return std::nullopt;
  std::string unit;
  for (char c : text.substr(i))
    if (!std::isspace(static_cast<unsigned char>(c))) unit += char(std::toupper(static_cast<unsigned char>(c)));
  double mult = 1;
  if (unit.empty() || unit == "B") {
    mult = 1;
  } else {
    const std::string_view letters = "KMGT";
    const auto p = letters.find(unit[0]);
    if (p == std::string_view::npos) return std::nullopt;
    const std::string rest = unit.substr(1);
    const double base = rest == "B" ? 1000.0 : (rest.empty() || rest == "IB") ? 1024.0 : 0.0;
    if (base == 0.0) return std::nullopt;
    mult = std::pow(base, double(p + 1));
  }
  const double bytes = value * mult;
  if (bytes > double(uint64_t{1} << 62)) return std::nullopt;
  return uint64_t(std::llround(bytes));
}

std::string format_size(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.1f} {}", bytes, units[u]);
}

}  // namespace tandem
