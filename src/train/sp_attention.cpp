#include "tandem/train/sp_attention.hpp"

#include "tandem/comm/communicator.hpp"
#include "tandem/core/error.hpp"
#include "tandem/parallel/scheme.hpp"

namespace tandem::train {

namespace {

// hybrid:UxR as the inference scheme registry spells it, checked against sp_ranks.
parallel::Scheme parse_hybrid(const std::string& name, int sp_ranks) {
  return parallel::parse_scheme(name, sp_ranks, "--sp");
}

bool is_hybrid(const std::string& name) { return name.rfind("hybrid", 0) == 0; }

}  // namespace

void check_sp_scheme(const std::string& name, int sp_ranks) {
  if (name == "local") {
    if (sp_ranks != 1)
      bad_input("--sp local runs one rank per sequence, and there are {} ranks per group: give "
                "--sp ring|zigzag|ulysses|hybrid:UxR, or --dp to train on different sequences",
                sp_ranks);
    return;
  }
  if (name == "ring" || name == "zigzag" || name == "ulysses") return;
  if (is_hybrid(name)) {
    parse_hybrid(name, sp_ranks);
    return;
  }
  bad_input("--sp {}: not a training scheme (local, ring, zigzag, ulysses, hybrid:UxR)", name);
}

SpAttention make_sp_attention(const std::string& name, parallel::AttnShape shape,
                              kernels::ThreadPool& pool, comm::Communicator& group) {
  check_sp_scheme(name, group.size());
  SpAttention s;
  if (name == "local") {
    s.attention = parallel::make_local_attention_grad(shape, pool);
  } else if (name == "ulysses") {
    s.attention = parallel::make_ulysses_attention_grad(shape, pool, group);
  } else if (is_hybrid(name)) {
    const parallel::Scheme h = parse_hybrid(name, group.size());
    s.attention = parallel::make_hybrid_attention_grad(shape, pool, group, h.ulysses, h.ring);
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
