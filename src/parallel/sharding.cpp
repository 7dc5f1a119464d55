#include "tandem/parallel/sharding.hpp"

#include "tandem/core/error.hpp"
#include "tandem/kernels/thread_pool.hpp"

namespace tandem::parallel {

std::string_view placement_name(Placement p) {
  return p == Placement::Contiguous ? "contiguous" : "zigzag";
}

std::vector<TokenRange> shard_ranges(int64_t n, int ranks, int rank, Placement placement) {
  TD_CHECK(n >= 0 && ranks >= 1 && rank >= 0 && rank < ranks);
  auto range = [&](int part, int parts) {
    const auto [b, e] = kernels::split_range(n, part, parts);
    return TokenRange{b, e};
  };
  if (placement == Placement::Contiguous) return {range(rank, ranks)};
  return {range(rank, 2 * ranks), range(2 * ranks - 1 - rank, 2 * ranks)};
}

std::vector<int64_t> shard_indices(int64_t n, int ranks, int rank, Placement placement) {
  std::vector<int64_t> idx;
  for (const TokenRange& r : shard_ranges(n, ranks, rank, placement))
    for (int64_t i = r.begin; i < r.end; ++i) idx.push_back(i);
  return idx;
}

std::vector<int64_t> shard_sizes(int64_t n, int ranks, Placement placement) {
  std::vector<int64_t> sizes(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r)
    for (const TokenRange& t : shard_ranges(n, ranks, r, placement)) sizes[size_t(r)] += t.size();
  return sizes;
}

}  // namespace tandem::parallel
