#include "tandem/train/sp_attention.hpp"

#include "tandem/comm/communicator.hpp"
#include "tandem/core/error.hpp"

namespace tandem::train {

void check_sp_scheme(const std::string& name, int sp_ranks) {
  if (name == "local") {
    if (sp_ranks != 1)
      bad_input("--sp local runs one rank per sequence, and there are {} ranks per group: give "
                "--sp ring|zigzag, or --dp to train on different sequences",
                sp_ranks);
    return;
  }
  if (name == "ring" || name == "zigzag") return;
  bad_input("--sp {}: not a training scheme (local, ring, zigzag)", name);
}

SpAttention make_sp_attention(const std::string& name, parallel::AttnShape shape,
                              kernels::ThreadPool& pool, comm::Communicator& group) {
  check_sp_scheme(name, group.size());
  SpAttention s;
  if (name == "local") {
    s.attention = parallel::make_local_attention_grad(shape, pool);
  } else {
    s.attention = parallel::make_ring_attention_grad(shape, pool, group);
    s.placement = name == "zigzag" ? parallel::Placement::Zigzag : parallel::Placement::Contiguous;
  }
  return s;
}

SeqShard shard_of(const Sequence& s, int ranks, int rank, parallel::Placement placement) {
  SeqShard out;
  for (const int64_t i : parallel::shard_indices(int64_t(s.tokens.size()), ranks, rank, placement)) {
    out.tokens.push_back(s.tokens[size_t(i)]);
    out.targets.push_back(s.targets[size_t(i)]);
    out.pos.push_back(int32_t(i));
  }
  return out;
}

}  // namespace tandem::train
