#pragma once
// Placement of a sequence of N tokens on P ranks. Any N and P >= 1: shards may be
// uneven, and empty when N < P (or N < 2P for zigzag). Each rank's tokens keep their
// global positions (rotary embedding and the causal mask use them).
//
// Bands: with band > 0 the sequence is cut into consecutive bands of `band` tokens (the
// last may be shorter) and each band is placed on the ranks by the placement, so a rank
// holds a share of every band. A chunked prefill runs band after band (one forward step
// each): the queries of band b see only keys of bands <= b, all already cached. band <= 0
// (or >= N): one band, the whole sequence.
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
// The runs of tokens rank r holds, ascending (per band one contiguous run, two for
// zigzag; with one band always those one or two runs, empty or not; with several bands
// only the non-empty ones).
std::vector<TokenRange> shard_ranges(int64_t n, int ranks, int rank, Placement placement,
                                     int64_t band = 0);

// Global indices (0..N-1, ascending) of the tokens rank r holds.
std::vector<int64_t> shard_indices(int64_t n, int ranks, int rank, Placement placement,
                                   int64_t band = 0);

// Token count of every rank's shard.
std::vector<int64_t> shard_sizes(int64_t n, int ranks, Placement placement, int64_t band = 0);

// The bands of a sequence: [k*band, min((k+1)*band, N)) (one band [0, N) when band <= 0).
std::vector<TokenRange> bands_of(int64_t n, int64_t band);

}  // namespace tandem::parallel
