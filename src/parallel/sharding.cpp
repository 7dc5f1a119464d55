#include "tandem/parallel/sharding.hpp"

#include "tandem/core/error.hpp"
#include "tandem/kernels/thread_pool.hpp"

namespace tandem::parallel {

std::string_view placement_name(Placement p) {
  return p == Placement::Contiguous ? "contiguous" : "zigzag";
}

std::vector<int64_t> shard_indices(int64_t n, int ranks, int rank, Placement placement) {
  TD_CHECK(n >= 0 && ranks >= 1 && rank >= 0 && rank < ranks);
  std::vector<int64_t> idx;
  auto add_range = [&](std::pair<int64_t, int64_t> r) {
    for (int64_t i = r.first; i < r.second; ++i) idx.push_back(i);
  };
  if (placement == Placement::Contiguous) {
    add_range(kernels::split_range(n, rank, ranks));
  } else {
    add_range(kernels::split_range(n, rank, 2 * ranks));
    add_range(kernels::split_range(n, 2 * ranks - 1 - rank, 2 * ranks));
  }
  return idx;
}

std::vector<int64_t> shard_sizes(int64_t n, int ranks, Placement placement) {
  std::vector<int64_t> sizes(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) sizes[size_t(r)] = int64_t(shard_indices(n, ranks, r, placement).size());
  return sizes;
}

}  // namespace tandem::parallel
