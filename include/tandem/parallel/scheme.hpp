#pragma once
// Sequence-parallel schemes by name (the --sp flag) and the attention strategy of each.
//   ring        pass-KV ring, contiguous shards (RingAttention, ring_attention.hpp)
//   zigzag      pass-KV ring, zigzag shards (balances the causal work)
//   ulysses     all-to-all to head-sharded attention (UlyssesAttention)
//   hybrid:UxR  Ulysses in groups of U ranks, pass-KV ring across R groups
//               (HybridAttention); U x R must equal the rank count
//   pass-q      ring that moves queries, K/V stay (PassQAttention)
//   auto        pass-KV or pass-Q per step by communication volume (AutoAttention)
// All but zigzag place tokens contiguously. Ulysses and hybrid prefill onto empty caches
// only; ring, pass-q and auto also onto caches that already hold a sharded sequence.
#include <memory>
#include <string>
#include <string_view>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/sequence_attention.hpp"
#include "tandem/parallel/sharding.hpp"

namespace tandem::parallel {

struct Scheme {
  enum class Kind { Ring, Ulysses, Hybrid, PassQ, Auto };
  Kind kind = Kind::Ring;
  Placement placement = Placement::Contiguous;
  int ulysses = 0, ring = 0;  // hybrid: U x R
  std::string name;           // as given: "ring", "zigzag", "ulysses", "hybrid:2x2", "pass-q", "auto"
};

// Parses ring | zigzag | ulysses | hybrid:UxR | pass-q | auto; throws Error(BadInput)
// naming `flag`. `ranks` checks hybrid's U x R.
Scheme parse_scheme(std::string_view text, int ranks, std::string_view flag = "--sp");

// The prefill attention strategy of a scheme on this rank. Collective for hybrid (it
// splits `comm`): every rank must call it.
std::unique_ptr<SequenceAttention> make_prefill_attention(const Scheme& s, AttnShape shape,
                                                          kernels::ThreadPool& pool,
                                                          comm::Communicator& comm);

// Bytes of buffers the scheme's prefill strategy holds on a rank with m_local tokens
// when the sequence has n_total tokens over `ranks` ranks (for memory budgets).
uint64_t scheme_workspace_bytes(const Scheme& s, AttnShape shape, int64_t m_local,
                                int64_t n_total, int ranks);

}  // namespace tandem::parallel
