#pragma once
// Placement of a sequence of N tokens on P ranks. Any N and P >= 1: shards may be
// uneven, and empty when N < P (or N < 2P for zigzag). Each rank's tokens keep their
// global positions (rotary embedding and the causal mask use them).
#include <cstdint>
#include <string_view>
#include <vector>

namespace tandem::parallel {

enum class Placement {
  Contiguous,  // rank r holds the r-th of P near-equal contiguous ranges
  Zigzag,      // 2P near-equal chunks; rank r holds chunks r and 2P-1-r (balances causal work)
};

std::string_view placement_name(Placement p);

// A run of global token indices [begin, end).
struct TokenRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
// The runs of tokens rank r holds, ascending (one contiguous run, two for zigzag).
std::vector<TokenRange> shard_ranges(int64_t n, int ranks, int rank, Placement placement);

// Global indices (0..N-1, ascending) of the tokens rank r holds.
std::vector<int64_t> shard_indices(int64_t n, int ranks, int rank, Placement placement);

// Token count of every rank's shard.
std::vector<int64_t> shard_sizes(int64_t n, int ranks, Placement placement);

}  // namespace tandem::parallel
