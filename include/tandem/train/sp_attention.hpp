#pragma once
// The attention of sequence-parallel training by scheme name (--sp): which placement the
// ranks of a group hold their shards in, and the AttentionGrad that spans them.
//   local    one rank per group
//   ring     pass-KV ring over contiguous shards
//   zigzag   the ring over zigzag shards (balanced causal work)
//   ulysses  all-to-all to head groups over contiguous shards
//   hybrid:UxR  Ulysses in groups of U ranks, the ring across R groups (U x R ranks a
//               group), contiguous shards
#include <memory>
#include <string>

#include "tandem/parallel/attention_grad.hpp"
#include "tandem/parallel/sharding.hpp"
#include "tandem/train/data.hpp"
#include "tandem/train/model_grad.hpp"

namespace tandem::comm {
class Communicator;
}

namespace tandem::train {

struct SpAttention {
  std::unique_ptr<parallel::AttentionGrad> attention;
  parallel::Placement placement = parallel::Placement::Contiguous;
};

// Throws Error(BadInput) naming --sp for a name it does not run on sp_ranks ranks.
void check_sp_scheme(const std::string& name, int sp_ranks);
SpAttention make_sp_attention(const std::string& name, parallel::AttnShape shape,
                              kernels::ThreadPool& pool, comm::Communicator& group);

// Rank `rank`'s share of a sequence among `ranks` (its tokens, targets and global
// positions, ascending).
SeqShard shard_of(const Sequence& s, int ranks, int rank, parallel::Placement placement);

}  // namespace tandem::train
