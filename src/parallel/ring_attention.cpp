#include "tandem/parallel/ring_attention.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/kernels/attention_merge.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::parallel {
namespace {
constexpr int kTag = 11;
}

RingAttention::RingAttention(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm)
    : SequenceAttention(shape), pool_(pool), comm_(comm) {}

int64_t RingAttention::begin_step(KVCache& cache, int64_t m, const int32_t* pos) {
  if (cache.size() != 0)
    bad_input("ring attention prefills empty KV caches; this rank's cache holds {} tokens",
              cache.size());
  // Every rank learns every block size (collective, once per step).
  std::vector<int64_t> sizes(size_t(comm_.size()), 0);
  sizes[size_t(comm_.rank())] = m;
  comm_.allreduce(sizes.data(), sizes.size(), comm::ReduceOp::Sum);
  sizes_ = std::move(sizes);
  max_size_ = *std::max_element(sizes_.begin(), sizes_.end());
  return SequenceAttention::begin_step(cache, m, pos);
}

// Packed block layout in floats: K [n][kv], V [n][kv], then n int32 positions.
void RingAttention::attend(KVCache& cache, int64_t slot, const AttnStep& s) {
  store_kv(cache, slot, s);
  const int P = comm_.size(), r = comm_.rank();
  const int64_t kv = shape_.kv_dim();
  const auto block_floats = [&](int64_t n) { return size_t(n * (2 * kv + 1)); };
  for (auto& b : buf_) b.resize(block_floats(max_size_));
  part_out_.resize(size_t(s.m * shape_.q_dim()));
  part_lse_.resize(size_t(s.m * shape_.H));
  lse_.assign(size_t(s.m * shape_.H), -std::numeric_limits<float>::infinity());
  std::fill(s.out, s.out + s.m * shape_.q_dim(), 0.0f);

  // Pack the local block into buffer 0.
  {
    float* b = buf_[0].data();
    std::memcpy(b, s.k, size_t(s.m * kv) * sizeof(float));
    std::memcpy(b + s.m * kv, s.v, size_t(s.m * kv) * sizeof(float));
    std::memcpy(b + 2 * s.m * kv, s.pos, size_t(s.m) * sizeof(int32_t));
  }
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  std::unique_ptr<comm::Request> send, recv;
  for (int step = 0; step < P; ++step) {
    const int owner = (r - step + P) % P;  // whose block is in hand
    const int64_t n = sizes_[size_t(owner)];
    float* cur = buf_[step % 2].data();
    // Forward the block in hand and receive the next one while computing.
    if (step + 1 < P) {
      if (send) {  // the other buffer is still being sent from the previous step
        const Stopwatch w;
        comm_.wait(*send);
        stats_.wait_seconds += w.seconds();
      }
      const int64_t n_next = sizes_[size_t((owner - 1 + P) % P)];
      send = comm_.isend(cur, block_floats(n) * sizeof(float), next, kTag);
      recv = comm_.irecv(buf_[(step + 1) % 2].data(), block_floats(n_next) * sizeof(float), prev,
                         kTag);
    }
    const Stopwatch c;
    pos_.resize(size_t(n));
    std::memcpy(pos_.data(), cur + 2 * n * kv, size_t(n) * sizeof(int32_t));
    attend_block(s, cur, cur + n * kv, pos_.data(), n, step == 0);
    stats_.compute_seconds += c.seconds();
    if (recv) {
      const Stopwatch w;
      comm_.wait(*recv);
      recv.reset();
      stats_.wait_seconds += w.seconds();
    }
  }
  if (send) {
    const Stopwatch w;
    comm_.wait(*send);
    stats_.wait_seconds += w.seconds();
  }
}

void RingAttention::attend_block(const AttnStep& s, const float* k, const float* v,
                                 const int32_t* kv_pos, int64_t n_kv, bool first) {
  if (s.m == 0 || n_kv == 0) return;
  // Causal skip: a block whose first key lies after every query contributes nothing.
  const int32_t q_max = *std::max_element(s.pos, s.pos + s.m);
  const int32_t k_min = *std::min_element(kv_pos, kv_pos + n_kv);
  if (k_min > q_max) {
    ++stats_.blocks_skipped;
    return;
  }
  kernels::AttentionArgs a;
  a.q = s.q;
  a.q_pos = s.pos;
  a.n_q = s.m;
  a.k = k;
  a.v = v;
  a.kv_pos = kv_pos;
  a.n_kv = n_kv;
  a.kv_stride = shape_.kv_dim();
  a.H = shape_.H;
  a.G = shape_.G;
  a.d = shape_.d;
  a.scale = shape_.scale;
  a.out = first ? s.out : part_out_.data();
  a.lse = first ? lse_.data() : part_lse_.data();
  kernels::attention(a, pool_);
  if (!first)
    kernels::attention_merge(s.out, lse_.data(), part_out_.data(), part_lse_.data(), s.m,
                             shape_.H, shape_.d);
}

}  // namespace tandem::parallel
