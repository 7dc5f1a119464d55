#pragma once
// How tests spell each registered scheme at P ranks: hybrid as 2 x (P/2) (P even, >= 4),
// the others as configure_scheme gives them; nullopt where the scheme has no form at P.
#include <gtest/gtest.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

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

// Every registered scheme but local, at each P of `ranks` where it has a form (scheme_at),
// with that P; a scheme with a form at none of them fails the calling test.
inline std::vector<std::pair<parallel::Scheme, int>> schemes_at(std::initializer_list<int> ranks) {
  std::vector<std::pair<parallel::Scheme, int>> out;
  for (const parallel::SchemeDesc* d : parallel::scheme_registry()) {
    if (d->name == "local") continue;
    int tried = 0;
    for (int P : ranks)
      if (auto s = scheme_at(*d, P)) {
        out.emplace_back(*s, P);
        ++tried;
      }
    EXPECT_GT(tried, 0) << d->name << " has a form at none of the rank counts tried";
  }
  return out;
}

}  // namespace tandem::test
