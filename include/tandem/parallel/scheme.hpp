#pragma once
// Sequence-parallel schemes: one registry, one descriptor per scheme. Everything that
// names, runs, sizes or predicts a scheme reads its descriptor: the --sp flag and its
// help text, the runtime (token placement, attention strategy, workspace, cache
// capacity), `tandem compare` and the planner (communication volume and per-rank work,
// scheme_cost.hpp).
//
//   local       one rank, the whole sequence (the single pipeline)
//   ring        pass-KV ring, contiguous shards (ring_attention.hpp)
//   zigzag      pass-KV ring, zigzag shards (balances the causal work)
//   ulysses     all-to-all to head-sharded attention (ulysses_attention.hpp)
//   hybrid:UxR  Ulysses in groups of U ranks, pass-KV ring across R groups
//               (hybrid_attention.hpp); U x R must equal the rank count
//   pass-q      ring that moves queries, K/V stay (pass_q_attention.hpp)
//   auto        pass-KV or pass-Q per step by communication volume (auto_attention.hpp)
//
// Adding a scheme: write its strategy (a SequenceAttention) and its descriptor in one
// file, and add one line to the registry list in scheme.cpp. The registry test
// (tests/parallel/scheme_registry_test.cpp) then checks that it equals `local` on
// 1..4 ranks, that the planner predicts it and that compare accepts it.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/scheme_cost.hpp"
#include "tandem/parallel/sequence_attention.hpp"
#include "tandem/parallel/sharding.hpp"

namespace tandem::parallel {

struct SchemeDesc;

// Tokens per forward step of a chunked prefill by default, over all ranks together: the
// single pipeline's chunk, so a rank's step holds 1/P of the single pipeline's
// activations and scratch. Per rank that is kDefaultSpChunk / P tokens, at least
// kMinSpChunk (a floor; steps below it are not measured). --sp-chunk sets the per-rank
// count itself; kAutoSpChunk asks for this default.
constexpr int64_t kDefaultSpChunk = 512;
constexpr int64_t kMinSpChunk = 128;
constexpr int64_t kAutoSpChunk = -1;
int64_t default_sp_chunk(int ranks);
// chunk as given (0: whole shard), or default_sp_chunk(ranks) for kAutoSpChunk.
int64_t resolve_sp_chunk(int64_t chunk, int ranks);

// A scheme as configured for one run.
struct Scheme {
  const SchemeDesc* desc = nullptr;
  std::string name;           // as given: "ring", "zigzag", "hybrid:2x2", ...
  Placement placement = Placement::Contiguous;
  int ulysses = 0, ring = 0;  // hybrid: U x R
  int fixed_ranks = 0;        // the rank count the spelling fixes (hybrid:UxR: U x R); 0: any
  // Chunked prefill: tokens per rank per forward step, the sequence placed band by band
  // (bands of chunk x P tokens, sharding.hpp), so a rank's activations are bounded by
  // the chunk, not by N/P. Only schemes that prefill onto caches (SchemeDesc::onto_cache)
  // chunk; 0 (as parsed): the whole shard in one step. Sessions set it from --sp-chunk.
  int64_t chunk = 0;
  // The descriptor's name ("hybrid" for hybrid:2x2).
  std::string_view kind() const;
  bool is(std::string_view kind_name) const { return kind() == kind_name; }
};

struct SchemeDesc {
  std::string_view name;    // "ring"; also what --sp takes unless `syntax` says more
  std::string_view syntax;  // how --sp spells it: "ring", "hybrid:UxR"
  std::string_view help;    // one line for --help and the docs
  Placement placement = Placement::Contiguous;
  // Prefills onto caches that already hold a sharded sequence (else onto empty ones only).
  bool onto_cache = false;
  // Every rank runs its whole shard in one forward step (collectives inside); else the
  // engine prefills in chunks (local).
  bool lockstep = true;
  // The scheme at `ranks` ranks when `text` names it (nullopt when it names another
  // scheme); throws Error(BadInput) naming `flag` when it names this one but is malformed
  // or does not fit `ranks` (ranks 0: any count; Scheme::fixed_ranks tells which it
  // needs). Null: the text is exactly `name`, at any rank count.
  std::optional<Scheme> (*parse)(const SchemeDesc& self, std::string_view text, int ranks,
                                 std::string_view flag) = nullptr;
  // The configuration the planner and compare use for a bare name at P ranks with K per
  // node; a reason when there is none (the scheme at that P is another one). Null: the
  // scheme as named, at any P.
  std::optional<Scheme> (*configure)(const SchemeDesc& self, int P, int K, std::string* why) = nullptr;
  // The prefill attention strategy on this rank. Collective where the strategy splits
  // `comm` (hybrid): every rank must call it.
  std::unique_ptr<SequenceAttention> (*make)(const Scheme& s, AttnShape shape,
                                             kernels::ThreadPool& pool, comm::Communicator& comm);
  // Bytes of buffers the strategy holds on a rank with m_local tokens when the sequence
  // has n_total tokens over `ranks` ranks (for memory budgets).
  uint64_t (*workspace_bytes)(const Scheme& s, AttnShape shape, int64_t m_local, int64_t n_total,
                              int ranks);
  // One layer of prefill onto empty caches, phase by phase: every rank's attention work
  // and bytes sent (scheme_cost.hpp).
  CostPhases (*cost)(const Scheme& s, const CostShape& shape, int64_t n, int ranks);
};

// Every scheme, `local` first. The order is the order of help texts and plans.
const std::vector<const SchemeDesc*>& scheme_registry();
// The descriptor named `name`, or nullptr.
const SchemeDesc* find_scheme(std::string_view name);

// Parses any registered spelling (ring | zigzag | ulysses | hybrid:UxR | pass-q | auto |
// local) for `ranks` ranks (0: any count, the syntax only); throws Error(BadInput) naming
// `flag` and listing the schemes.
Scheme parse_scheme(std::string_view text, int ranks, std::string_view flag = "--sp");
// "local, ring, zigzag, ulysses, hybrid:UxR, pass-q, auto" (with_local false: without local).
std::string scheme_list(bool with_local = true);
// One line per scheme: "  ring        pass-KV ring, contiguous shards".
std::string scheme_help();
// The configuration of a bare name (or a full spelling) at P ranks, K per node, for
// the planner and compare; nullopt with the reason when there is none.
std::optional<Scheme> configure_scheme(std::string_view text, int P, int K, std::string* why);

// The scheme's prefill strategy on this rank, computing attention with `kernel`.
// Collective for hybrid.
std::unique_ptr<SequenceAttention> make_prefill_attention(const Scheme& s, AttnShape shape,
                                                          kernels::ThreadPool& pool,
                                                          comm::Communicator& comm,
                                                          AttnKernel kernel = AttnKernel::Flash);

// Tokens per band of an n-token prefill at `ranks` ranks: chunk x ranks when the scheme
// chunks (onto_cache, chunk > 0, ranks > 1), else n (one band, one step).
int64_t scheme_band(const Scheme& s, int64_t n, int ranks);
// The runs of tokens rank `rank` holds (shard_ranges with the scheme's placement and band).
std::vector<TokenRange> scheme_shard(const Scheme& s, int64_t n, int ranks, int rank);
// The most tokens rank `rank` runs in one forward step of the prefill.
int64_t scheme_step_tokens(const Scheme& s, int64_t n, int ranks, int rank);

// Tokens of this rank's shard plus its share of n_decode round-robin decode tokens
// (the sharded decode stores the token at position p on rank p mod P).
int64_t scheme_cache_capacity(const Scheme& s, int64_t n_prompt, int64_t n_decode, int ranks,
                              int rank);
uint64_t scheme_workspace_bytes(const Scheme& s, AttnShape shape, int64_t m_local,
                                int64_t n_total, int ranks);

// Shared parts of descriptors.
namespace scheme_parts {
// The scheme exactly as named, at any rank count (SchemeDesc::parse for plain names).
Scheme named(const SchemeDesc& d);
// Workspace pieces, in floats (estimates for a prefill onto empty caches; see each
// strategy's header): the K/V chunks of the pass-KV conveyor (three of at most
// ring_chunk_rows() rows, no longer than the largest shard of any placement);
// the partial output and two lse rows of this rank's queries; the all-to-all send and
// receive buffers of Q, K, V and O for this rank's share.
int64_t ring_block_floats(const Scheme& s, AttnShape shape, int64_t n_total, int ranks);
int64_t partial_floats(AttnShape shape, int64_t m_local);
int64_t exchange_floats(AttnShape shape, int64_t m_local, int64_t n_total, int ranks);
inline uint64_t bytes_of(int64_t floats) { return uint64_t(floats) * sizeof(float); }
// SchemeDesc::make for a strategy constructed from (shape, pool, comm).
template <class Strategy>
std::unique_ptr<SequenceAttention> make_strategy(const Scheme&, AttnShape shape,
                                                 kernels::ThreadPool& pool, comm::Communicator& comm) {
  return std::make_unique<Strategy>(shape, pool, comm);
}
// A ring over all ranks of the scheme's placement, band after band of a chunked
// prefill (one band when it does not chunk): in band b every rank's queries are its share
// of band b and its keys its cache (bands 0..b). What travels: K/V (pass-KV), queries
// (pass-Q), or per band the one prefer_pass_q picks (auto).
enum class RingMove { KV, Queries, Auto };
CostPhases ring_cost(const Scheme& s, const CostShape& shape, int64_t n, int ranks, RingMove move);
// SchemeDesc::cost of the pass-KV ring (ring, zigzag).
CostPhases pass_kv_cost(const Scheme& s, const CostShape& shape, int64_t n, int ranks);
}  // namespace scheme_parts

}  // namespace tandem::parallel
