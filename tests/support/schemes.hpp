#pragma once
// How tests spell each registered scheme at P ranks: hybrid as 2 x (P/2) (P even, >= 4),
// the others as configure_scheme gives them; nullopt where the scheme has no form at P.
#include <optional>
#include <string>

#include "tandem/parallel/scheme.hpp"

namespace tandem::test {

inline std::optional<parallel::Scheme> scheme_at(const parallel::SchemeDesc& d, int P) {
  std::string why;
  if (d.name == "hybrid") {
    if (P % 2 || P < 4) return std::nullopt;
    return parallel::parse_scheme("hybrid:2x" + std::to_string(P / 2), P);
  }
  return parallel::configure_scheme(d.name, P, P, &why);
}

}  // namespace tandem::test
