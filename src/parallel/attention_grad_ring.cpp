// Ring (pass-KV) attention for training (attention_grad.hpp).
//
// Forward: PassKVRing, as in inference; its log-sum-exp over all keys is kept for the
// backward.
//
// Backward: the K/V blocks circulate again (own block first, then rank-1's, ...). On the
// block of owner o, this rank adds its queries' gradient into dq and computes the block's
// dK/dV contribution into a fresh buffer; meanwhile the accumulator of that block, which
// the previous rank finished one step earlier, is arriving; the contribution is added to
// it and the sum goes on to the next rank. After the last block (owner rank+1) the sum is
// sent to the next rank, which is its owner, and this rank receives its own block's
// complete dK/dV from the previous. An accumulator moves while the next block is
// computed, so its transfer overlaps work as the K/V transfer does. Volume per layer and
// rank in the backward: K/V of the others' blocks (as the forward) plus the same volume of
// dK/dV, and one more block of dK/dV home. The backward works on any head subset
// (PassKVRingGrad, ring_grad.hpp: the hybrid runs it on head-sharded blocks).
#include <algorithm>
#include <cstring>

#include "parallel/ring_grad.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/held_bytes.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/parallel/attention_grad.hpp"
#include "tandem/parallel/ring_attention.hpp"

namespace tandem::parallel {

size_t PassKVRingGrad::held_bytes() const {
  return (own_circ_ ? own_circ_->held_bytes() : 0) + held_bytes_of(acc_in_, part_[0], part_[1], pos_);
}

void PassKVRingGrad::run(const HeadView& hv, const HeadGradArgs& g) {
  const int P = comm_.size(), r = comm_.rank();
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  const int64_t kvw = int64_t(hv.kv_heads) * hv.d, n = g.n_kv;
  std::fill(g.dq, g.dq + g.n_q * hv.q_heads * hv.d, 0.0f);
  const int32_t q_max = g.n_q > 0 ? *std::max_element(g.q_pos, g.q_pos + g.n_q) : 0;

  circ_.set_rows(n);
  float* own = circ_.local_block(2 * kvw + 1);
  std::memcpy(own, g.k, size_t(n * kvw) * sizeof(float));
  std::memcpy(own + n * kvw, g.v, size_t(n * kvw) * sizeof(float));
  std::memcpy(own + 2 * n * kvw, g.kv_pos, size_t(n) * sizeof(int32_t));

  int step = 0, last = 0;
  std::unique_ptr<comm::Request> acc_send;
  auto on_block = [&](int owner, const float* blk, int64_t nb) {
    // The sum so far of another member's block's dK/dV (ranks owner .. rank-1), arriving
    // now. (Empty blocks never come: the first block here need not be this member's.)
    std::unique_ptr<comm::Request> acc_recv;
    std::vector<float>& in = acc_in_;
    in.resize(size_t(2 * nb * kvw));
    if (owner != r && nb > 0) acc_recv = comm_.irecv(in.data(), in.size() * sizeof(float), prev, acc_tag_);
    // This rank's contribution, into the buffer not being sent.
    std::vector<float>& part = part_[step % 2];
    part.assign(size_t(2 * nb * kvw), 0.0f);
    pos_.resize(size_t(nb));
    std::memcpy(pos_.data(), blk + 2 * nb * kvw, size_t(nb) * sizeof(int32_t));
    const bool visible = nb > 0 && g.n_q > 0 && *std::min_element(pos_.begin(), pos_.end()) <= q_max;
    if (visible) {
      HeadGradArgs b = g;
      b.k = blk;
      b.v = blk + nb * kvw;
      b.kv_pos = pos_.data();
      b.n_kv = nb;
      b.dk = part.data();
      b.dv = part.data() + nb * kvw;
      attend_heads_backward(hv, b, pool_);
    }
    if (acc_recv) {
      comm_.wait(*acc_recv);
      for (size_t i = 0; i < part.size(); ++i) part[i] += in[i];
    }
    if (acc_send) comm_.wait(*acc_send);
    acc_send.reset();
    if (P > 1 && nb > 0) acc_send = comm_.isend(part.data(), part.size() * sizeof(float), next, acc_tag_);
    last = step % 2;
    ++step;
  };
  circ_.run(on_block);
  const float* sum = part_[last].data();
  if (P > 1) {
    // This block's complete sum comes from the previous rank (the last to add to it).
    std::vector<float>& home_sum = acc_in_;  // no accumulator arrives any more
    home_sum.resize(size_t(2 * n * kvw));
    std::unique_ptr<comm::Request> home;
    if (n > 0) home = comm_.irecv(home_sum.data(), size_t(2 * n * kvw) * sizeof(float), prev, acc_tag_);
    if (acc_send) comm_.wait(*acc_send);
    if (home) comm_.wait(*home);
    sum = home_sum.data();
  }
  if (n == 0) return;
  std::memcpy(g.dk, sum, size_t(n * kvw) * sizeof(float));
  std::memcpy(g.dv, sum + n * kvw, size_t(n * kvw) * sizeof(float));
}

namespace {

constexpr int kForwardTag = 41, kBackwardTag = 42;  // and kBackwardTag + 1

class RingAttentionGrad final : public AttentionGrad {
 public:
  RingAttentionGrad(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm)
      : AttentionGrad(shape, pool), fwd_(comm, pool, kForwardTag),
        bwd_(fwd_.circulator(), pool, kBackwardTag + 1),
        view_(full_head_view(shape.H, shape.G, shape.d, shape.scale)) {
    fwd_.set_chunk_rows(kWholeBlocks);
  }
  std::string_view name() const override { return "ring"; }
  size_t held_bytes() const override {
    return fwd_.held_bytes() + bwd_.held_bytes() + held_bytes_of(delta_);
  }

  void forward(const AttnGradStep& s) override {
    TD_CHECK(shape_.softcap == 0.0f);
    fwd_.begin_step(s.n);
    fwd_.run(view_, s.q, s.pos, s.n, s.k, s.v, s.pos, s.out);
    std::copy(fwd_.lse().begin(), fwd_.lse().begin() + s.n * shape_.H, s.lse);
  }

  void backward(const AttnGradStep& s, const float* dout, float* dq, float* dk,
                float* dv) override {
    delta_.resize(size_t(s.n * shape_.H));
    kernels::attention_delta(s.out, dout, s.n, shape_.H, shape_.d, delta_.data());
    // One segment of all heads: the head layout is the token layout.
    HeadGradArgs g;
    g.q = s.q;
    g.q_pos = s.pos;
    g.n_q = s.n;
    g.k = s.k;
    g.v = s.v;
    g.kv_pos = s.pos;
    g.n_kv = s.n;
    g.lse = s.lse;
    g.dout = dout;
    g.delta = delta_.data();
    g.dq = dq;
    g.dk = dk;
    g.dv = dv;
    bwd_.run(view_, g);
  }

 private:
  PassKVRing fwd_;
  PassKVRingGrad bwd_;
  HeadView view_;
  std::vector<float> delta_;
};

}  // namespace

std::unique_ptr<AttentionGrad> make_ring_attention_grad(AttnShape shape, kernels::ThreadPool& pool,
                                                        comm::Communicator& comm) {
  return std::make_unique<RingAttentionGrad>(shape, pool, comm);
}

}  // namespace tandem::parallel
