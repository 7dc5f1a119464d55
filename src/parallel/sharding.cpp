#include "tandem/parallel/sharding.hpp"

#include <algorithm>

#include "tandem/core/error.hpp"
#include "tandem/kernels/thread_pool.hpp"

namespace tandem::parallel {

std::string_view placement_name(Placement p) {
  return p == Placement::Contiguous ? "contiguous" : "zigzag";
}

std::vector<TokenRange> bands_of(int64_t n, int64_t band) {
  TD_CHECK(n >= 0);
  if (band <= 0 || band >= n) return {TokenRange{0, n}};
  std::vector<TokenRange> out;
  for (int64_t b = 0; b < n; b += band) out.push_back(TokenRange{b, std::min(n, b + band)});
  return out;
}

std::vector<TokenRange> shard_ranges(int64_t n, int ranks, int rank, Placement placement,
                                     int64_t band) {
  TD_CHECK(n >= 0 && ranks >= 1 && rank >= 0 && rank < ranks);
  std::vector<TokenRange> out;
  const std::vector<TokenRange> bands = bands_of(n, band);
  for (const TokenRange& b : bands) {
    // One band keeps its empty runs (as callers index them by part); several drop them.
    auto add = [&](int part, int parts) {
      const auto [lo, hi] = kernels::split_range(b.size(), part, parts);
      if (hi > lo || bands.size() == 1) out.push_back(TokenRange{b.begin + lo, b.begin + hi});
    };
    if (placement == Placement::Contiguous) {
      add(rank, ranks);
    } else {
      add(rank, 2 * ranks);
      add(2 * ranks - 1 - rank, 2 * ranks);
    }
  }
  return out;
}

std::vector<int64_t> shard_indices(int64_t n, int ranks, int rank, Placement placement,
                                   int64_t band) {
  std::vector<int64_t> idx;
  for (const TokenRange& r : shard_ranges(n, ranks, rank, placement, band))
    for (int64_t i = r.begin; i < r.end; ++i) idx.push_back(i);
  return idx;
}

std::vector<int64_t> shard_sizes(int64_t n, int ranks, Placement placement, int64_t band) {
  std::vector<int64_t> sizes(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r)
    for (const TokenRange& t : shard_ranges(n, ranks, r, placement, band)) sizes[size_t(r)] += t.size();
  return sizes;
}

}  // namespace tandem::parallel
