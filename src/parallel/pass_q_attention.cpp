#include "tandem/parallel/pass_q_attention.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "tandem/parallel/scheme.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/kernels/attention_merge.hpp"

namespace tandem::parallel {
namespace {
constexpr int kTagQ = 12, kTagPartial = 13;
}

PassQAttention::PassQAttention(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm)
    : SequenceAttention(shape, pool),
      circ_(comm, kTagQ),
      view_(full_head_view(shape.H, shape.G, shape.d, shape.scale, shape.softcap)) {}

int64_t PassQAttention::begin_step(KVCache& cache, int64_t m, const int32_t* pos) {
  circ_.set_rows(m);  // collective: every rank's query block size
  const int64_t slot = SequenceAttention::begin_step(cache, m, pos);
  // Every cached position, the step's new ones included (append stored them).
  read_cache_positions(cache);
  cache_min_pos_ = cache.size() > 0 ? *std::min_element(cache_pos_.begin(), cache_pos_.end()) : 0;
  return slot;
}

// Query block layout in floats: q [n][H*d], then n int32 positions.
// Partial layout: out [n][H*d], then lse [n][H].
void PassQAttention::attend(KVCache& cache, int64_t slot, const AttnStep& s) {
  store_kv(cache, slot, s);
  comm::Communicator& comm = circ_.comm();
  const int P = comm.size(), me = comm.rank();
  const int64_t qd = shape_.q_dim(), H = shape_.H, pw = qd + H;  // partial floats per token
  {
    float* b = circ_.local_block(qd + 1);
    if (s.m > 0) {
      std::memcpy(b, s.q, size_t(s.m * qd) * sizeof(float));
      std::memcpy(b + s.m * qd, s.pos, size_t(s.m) * sizeof(int32_t));
    }
  }
  // Where each visiting block's partial is kept until it has been sent.
  send_off_.resize(size_t(P));
  size_t total = 0;
  for (int o = 0; o < P; ++o) {
    send_off_[size_t(o)] = total;
    if (o != me) total += size_t(circ_.rows(o) * pw);
  }
  if (send_.size() < total) send_.resize(total);
  // Post the receives of this block's partials from every other rank (ring order).
  reqs_.clear();
  if (s.m > 0) {
    if (recv_.size() < size_t((P - 1) * s.m * pw)) recv_.resize(size_t((P - 1) * s.m * pw));
    for (int i = 1; i < P; ++i)
      reqs_.push_back(comm.irecv(recv_.data() + (i - 1) * s.m * pw,
                                 size_t(s.m * pw) * sizeof(float), (me + i) % P, kTagPartial));
  }
  const size_t n_recvs = reqs_.size();
  lse_.resize(size_t(s.m * H));
  const int64_t n_kv = cache.size();
  const KvRows rows = cache_rows(cache, s.layer);  // this rank's keys, through the page table
  const HeadView view = with_window(view_, s.window);
  auto on_block = [&](int owner, const float* blk, int64_t n) {
    if (n == 0) return;
    float* out = owner == me ? s.out : send_.data() + send_off_[size_t(owner)];
    float* lse = owner == me ? lse_.data() : out + n * qd;
    pos_.resize(size_t(n));
    std::memcpy(pos_.data(), blk + n * qd, size_t(n) * sizeof(int32_t));
    const int32_t q_max = *std::max_element(pos_.begin(), pos_.end());
    if (n_kv > 0 && cache_min_pos_ <= q_max) {
      // In query sub-blocks with MPI progress between them (ring_attention.hpp).
      circ_.stats().head_pairs +=
          visible_pairs(pos_.data(), n, cache_pos_.data(), n_kv) * uint64_t(shape_.H);
      attend_heads_progress(circ_, view, blk, pos_.data(), n, rows, out, lse, pool_, kernel_);
    } else {  // nothing visible here: an empty partial
      if (n_kv > 0) ++circ_.stats().blocks_skipped;
      std::fill(out, out + n * qd, 0.0f);
      std::fill(lse, lse + n * H, -std::numeric_limits<float>::infinity());
    }
    if (owner != me)
      reqs_.push_back(comm.isend(out, size_t(n * pw) * sizeof(float), owner, kTagPartial));
  };
  circ_.run(on_block);
  // Merge the partials of this rank's block in ring order, then finish the sends.
  RingStats& st = circ_.stats();
  for (size_t i = 0; i < reqs_.size(); ++i) {
    const Stopwatch w;
    comm.wait(*reqs_[i]);
    st.wait_seconds += w.seconds();
    if (i >= n_recvs) continue;
    const Stopwatch c;
    const float* p = recv_.data() + int64_t(i) * s.m * pw;
    kernels::attention_merge(s.out, lse_.data(), p, p + s.m * qd, s.m, shape_.H, shape_.d);
    st.compute_seconds += c.seconds();
  }
}

}  // namespace tandem::parallel

namespace tandem::parallel {

const SchemeDesc& pass_q_scheme() {
  static const SchemeDesc d = [] {
    SchemeDesc x;
    x.name = x.syntax = "pass-q";
    x.help = "ring attention that moves queries while K/V stay, contiguous shards";
    x.onto_cache = true;
    x.make = scheme_parts::make_strategy<PassQAttention>;
    x.workspace_bytes = [](const Scheme& s, AttnShape shape, int64_t, int64_t n_total, int ranks) {
      // Query blocks in flight, and the partials of every visiting block kept until sent:
      // those of one step (a band of a chunked prefill).
      const int64_t step = scheme_band(s, n_total, ranks);
      const int64_t max_shard = step / ranks + 2;
      return scheme_parts::bytes_of(2 * max_shard * (shape.q_dim() + 1) +
                                    2 * step * (shape.q_dim() + shape.H));
    };
    x.cost = [](const Scheme& s, const CostShape& shape, int64_t n, int ranks) {
      return scheme_parts::ring_cost(s, shape, n, ranks, scheme_parts::RingMove::Queries);
    };
    return x;
  }();
  return d;
}

}  // namespace tandem::parallel
