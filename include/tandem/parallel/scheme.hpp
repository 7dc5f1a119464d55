#pragma once
// Sequence-parallel schemes by name (the --sp flag) and the attention strategy of each.
#include <memory>
#include <string>
#include <string_view>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/sequence_attention.hpp"
#include "tandem/parallel/sharding.hpp"

namespace tandem::parallel {

struct Scheme {
  enum class Kind { Ring, Ulysses, Hybrid, PassQ };
  Kind kind = Kind::Ring;
  Placement placement = Placement::Contiguous;
  int ulysses = 0, ring = 0;  // hybrid: U x R
  std::string name;           // as given: "ring", "zigzag", "ulysses", "hybrid:2x2", "pass-q"
};

// Parses ring | zigzag | ulysses | hybrid:UxR | pass-q; throws Error(BadInput) naming
// `flag`. `ranks` checks hybrid's U x R.
Scheme parse_scheme(std::string_view text, int ranks, std::string_view flag = "--sp");

// The prefill attention strategy of a scheme on this rank.
std::unique_ptr<SequenceAttention> make_prefill_attention(const Scheme& s, AttnShape shape,
                                                          kernels::ThreadPool& pool,
                                                          comm::Communicator& comm);

}  // namespace tandem::parallel
