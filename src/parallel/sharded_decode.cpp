#include "tandem/parallel/sharded_decode.hpp"

#include <algorithm>
#include <limits>

#include "tandem/kernels/attention_merge.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::parallel {

ShardedDecode::ShardedDecode(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm)
    : SequenceAttention(shape, pool), comm_(comm) {}

int64_t ShardedDecode::begin_step(KVCache& cache, int64_t m, const int32_t* pos) {
  mine_.clear();
  std::vector<int32_t> my_pos;
  for (int64_t i = 0; i < m; ++i)
    if (owner(pos[i]) == comm_.rank()) {
      mine_.push_back(i);
      my_pos.push_back(pos[i]);
    }
  const int64_t slot = mine_.empty() ? -1 : cache.append(int64_t(mine_.size()), my_pos.data());
  read_cache_positions(cache);  // for counting the work, once per step (not per layer)
  return slot;
}

void ShardedDecode::attend(KVCache& cache, int64_t slot, const AttnStep& s) {
  const int64_t qd = shape_.q_dim(), H = shape_.H;
  // Owned tokens may be scattered in the step; store them one by one.
  for (size_t j = 0; j < mine_.size(); ++j) store_kv(cache, slot + int64_t(j), s, mine_[j], 1);
  // Partial over the local shard, packed as [out | lse] for this rank.
  const int P = comm_.size();
  const size_t block = size_t(s.m * (qd + H));
  gathered_.resize(block * size_t(P));
  float* mine = gathered_.data() + block * size_t(comm_.rank());
  auto a = cache_args(s, cache);
  a.out = mine;
  a.lse = mine + s.m * qd;
  if (a.n_kv > 0) {
    count_pairs(s.pos, s.m, cache_pos_.data(), a.n_kv, shape_.H);
    run_attention(a, kernel_, pool_);
  } else {
    std::fill(mine, mine + s.m * qd, 0.0f);
    std::fill(mine + s.m * qd, mine + block, -std::numeric_limits<float>::infinity());
  }
  bytes_.assign(size_t(P), block * sizeof(float));
  offsets_.resize(size_t(P));
  for (int r = 0; r < P; ++r) offsets_[size_t(r)] = size_t(r) * block * sizeof(float);
  comm_.allgatherv(mine, block * sizeof(float), gathered_.data(), bytes_, offsets_);
  // Merge in rank order (same on every rank).
  std::copy(gathered_.begin(), gathered_.begin() + s.m * qd, s.out);
  lse_.assign(gathered_.begin() + s.m * qd, gathered_.begin() + ptrdiff_t(block));
  for (int r = 1; r < P; ++r) {
    const float* p = gathered_.data() + size_t(r) * block;
    kernels::attention_merge(s.out, lse_.data(), p, p + s.m * qd, s.m, shape_.H, shape_.d);
  }
}

}  // namespace tandem::parallel
