#pragma once
// What a scheme costs, as formulas of its own placement: per layer of a prefill onto
// empty caches, the attention work of every rank and the bytes every rank sends, phase
// by phase. The planner (analysis/planner) turns phases into time on a hardware profile;
// tests count the same work in real runs (SequenceAttention::head_pairs) and the same
// bytes (comm::CommStats), so the model and the runtime cannot drift apart.
//
// Work is counted in (query, key, query head) triples visible under the causal mask:
// each costs 4*d FLOPs (2*d for q.k, 2*d for p*v). Bytes count the elements of K, V, Q
// and outputs at `b` bytes each, plus 4 bytes per log-sum-exp value and per token of a
// block that circulates in a ring (its int32 position travels with it). The block sizes
// and positions agreed once per forward step (not per layer) are left out.
#include <cstdint>
#include <vector>

#include "tandem/parallel/sharding.hpp"

namespace tandem::parallel {

// Bytes of the position that travels with each token of a ring block.
constexpr double kPositionBytes = 4;

struct CostShape {
  int64_t H = 0, G = 0, d = 0;  // query heads, KV heads, head dim
  double b = 4;                 // bytes per K/V/Q/O element on the wire
};

struct CostPhase {
  enum class Kind {
    Compute,   // attention only
    RingStep,  // attention on the block in hand while the next block travels (overlapped)
    Exchange,  // an all-to-all (or the last sends) before or after the attention, not overlapped
  };
  Kind kind = Kind::Compute;
  // The ranks that talk in this phase: groups of `group` members `stride` ranks apart
  // (a ring over all P ranks: group P, stride 1; the hybrid's ring: group R, stride U).
  int group = 1, stride = 1;
  std::vector<double> head_pairs;  // per rank: work in this phase
  // Per rank: the query tokens and query heads of its attention in this phase (empty or
  // 0: none), so head_pairs / (tokens x heads) is the keys each query sees on average.
  std::vector<double> query_tokens, query_heads;
  std::vector<double> bytes;       // per rank: bytes sent in this phase
  // The most keys one kernel call of this phase reads (0: all the phase's keys at once):
  // a pass-KV ring's conveyor hands the keys over in chunks of this many rows, and the
  // kernel's rate depends on the keys of a call (how much of K and V stays in cache),
  // not on the phase's.
  double call_keys = 0;
};
using CostPhases = std::vector<CostPhase>;

// Visible (query, key) pairs of queries in `q` against keys in `k` (runs of positions).
double range_pairs(const TokenRange& q, const TokenRange& k);
double range_pairs(const std::vector<TokenRange>& q, const std::vector<TokenRange>& k);
int64_t range_tokens(const std::vector<TokenRange>& r);

// The tokens of `members` consecutive ranks starting at rank `first` (a hybrid group).
std::vector<TokenRange> group_ranges(int64_t n, int ranks, Placement placement, int first,
                                     int members);

// A ring of `R` members (member j = the ranks' group j) over token sets held[j]: at step
// s member j attends to the block of member (j - s) mod R and forwards it (except at the
// last step). For each of `ranks` ranks: its member index member_of[r], the query heads it
// computes heads[r], the bytes per token of the blocks it forwards kv_bytes[r]. With
// pass_q the queries travel instead (work: visiting queries against the member's own
// keys; the partials, out_bytes[r] per token, go back to their owner during the next
// step, the last ones in a closing Exchange phase).
struct RingSpec {
  int R = 1, stride = 1;
  std::vector<std::vector<TokenRange>> held;  // [R]
  // The step's queries of each member, when not all of held (a chunked prefill's band:
  // the keys are the member's whole cache, the queries its share of the band).
  std::vector<std::vector<TokenRange>> queries;  // [R] or empty
  std::vector<int> member_of;                 // [ranks]
  std::vector<double> heads, token_bytes, out_bytes;  // [ranks]
  bool pass_q = false;
  // Rows of the conveyor's chunks (pass-KV: the keys of one call, CostPhase::call_keys;
  // 0: whole blocks).
  double chunk_rows = 0;
};
CostPhases ring_phases(const RingSpec& spec);

// The Ulysses all-to-alls inside groups of U consecutive ranks (Ulysses: U = P; the
// hybrid's groups): to_heads before the attention (each member sends every other member
// its tokens' Q, K and V of the receiver's heads), to_tokens after it (the outputs of its
// heads for the other members' tokens); and the query / KV heads each rank then holds
// (split_heads(H, G, U) by place in the group).
struct HeadExchangeCost {
  CostPhase to_heads, to_tokens;
  std::vector<double> q_heads, kv_heads;  // [ranks]
};
HeadExchangeCost head_exchange_cost(const CostShape& shape, int64_t n, int ranks,
                                    Placement placement, int U);

}  // namespace tandem::parallel
