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
// dK/dV, and one more block of dK/dV home.
#include <algorithm>
#include <cstring>

#include "tandem/core/error.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/parallel/attention_grad.hpp"
#include "tandem/parallel/ring_attention.hpp"

namespace tandem::parallel {
namespace {

constexpr int kForwardTag = 41, kBackwardTag = 42, kAccTag = 43;

class RingAttentionGrad final : public AttentionGrad {
 public:
  RingAttentionGrad(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm)
      : AttentionGrad(shape, pool), comm_(comm), fwd_(comm, pool, kForwardTag), circ_(comm, kBackwardTag),
        view_(full_head_view(shape.H, shape.G, shape.d, shape.scale)) {
    fwd_.set_chunk_rows(kWholeBlocks);
  }
  std::string_view name() const override { return "ring"; }

  void forward(const AttnGradStep& s) override {
    TD_CHECK(shape_.softcap == 0.0f);
    fwd_.begin_step(s.n);
    fwd_.run(view_, s.q, s.pos, s.n, s.k, s.v, s.pos, s.out);
    std::copy(fwd_.lse().begin(), fwd_.lse().begin() + s.n * shape_.H, s.lse);
  }

  void backward(const AttnGradStep& s, const float* dout, float* dq, float* dk,
                float* dv) override {
    const int P = comm_.size(), r = comm_.rank();
    const int next = (r + 1) % P, prev = (r + P - 1) % P;
    const int64_t kvw = shape_.kv_dim(), n = s.n;
    std::fill(dq, dq + n * shape_.q_dim(), 0.0f);
    delta_.resize(size_t(n * shape_.H));
    kernels::attention_delta(s.out, dout, n, shape_.H, shape_.d, delta_.data());
    const int32_t q_max = n > 0 ? *std::max_element(s.pos, s.pos + n) : 0;

    circ_.set_rows(n);
    float* own = circ_.local_block(2 * kvw + 1);
    std::memcpy(own, s.k, size_t(n * kvw) * sizeof(float));
    std::memcpy(own + n * kvw, s.v, size_t(n * kvw) * sizeof(float));
    std::memcpy(own + 2 * n * kvw, s.pos, size_t(n) * sizeof(int32_t));

    int calls = 0;
    std::unique_ptr<comm::Request> acc_send;
    auto on_block = [&](int owner, const float* blk, int64_t nb) {
      // The sum so far of this block's dK/dV (ranks owner .. rank-1), arriving now. (The
      // circulator may skip empty blocks: the steps are counted by owner, not by call.)
      std::unique_ptr<comm::Request> acc_recv;
      std::vector<float>& in = acc_in_;
      in.resize(size_t(2 * nb * kvw));
      if (owner != r && nb > 0) acc_recv = comm_.irecv(in.data(), in.size() * sizeof(float), prev, kAccTag);
      // This rank's contribution, into the buffer not being sent.
      std::vector<float>& part = part_[calls % 2];
      part.assign(size_t(2 * nb * kvw), 0.0f);
      pos_.resize(size_t(nb));
      std::memcpy(pos_.data(), blk + 2 * nb * kvw, size_t(nb) * sizeof(int32_t));
      const bool visible = nb > 0 && n > 0 && *std::min_element(pos_.begin(), pos_.end()) <= q_max;
      if (visible) {
        kernels::AttentionBackwardArgs b;
        b.fwd = args(s, blk, blk + nb * kvw, pos_.data(), nb);
        b.dout = dout;
        b.delta = delta_.data();
        b.dq = dq;
        b.dk = part.data();
        b.dv = part.data() + nb * kvw;
        kernels::attention_backward(b, pool_);
      }
      if (acc_recv) {
        comm_.wait(*acc_recv);
        for (size_t i = 0; i < part.size(); ++i) part[i] += in[i];
      }
      if (acc_send) comm_.wait(*acc_send);
      acc_send.reset();
      if (P > 1 && nb > 0) acc_send = comm_.isend(part.data(), part.size() * sizeof(float), next, kAccTag);
      last_ = calls % 2;
      ++calls;
    };
    circ_.run(on_block);
    if (P == 1) {
      if (n == 0) return;
      std::memcpy(dk, part_[last_].data(), size_t(n * kvw) * sizeof(float));
      std::memcpy(dv, part_[last_].data() + n * kvw, size_t(n * kvw) * sizeof(float));
      return;
    }
    // This block's complete sum comes from the previous rank (the last to add to it).
    home_.resize(size_t(2 * n * kvw));
    std::unique_ptr<comm::Request> home;
    if (n > 0) home = comm_.irecv(home_.data(), home_.size() * sizeof(float), prev, kAccTag);
    if (acc_send) comm_.wait(*acc_send);
    if (home) comm_.wait(*home);
    std::memcpy(dk, home_.data(), size_t(n * kvw) * sizeof(float));
    std::memcpy(dv, home_.data() + n * kvw, size_t(n * kvw) * sizeof(float));
  }

 private:
  kernels::AttentionArgs args(const AttnGradStep& s, const float* k, const float* v,
                              const int32_t* kv_pos, int64_t n_kv) const {
    kernels::AttentionArgs a;
    a.q = s.q;
    a.q_pos = s.pos;
    a.n_q = s.n;
    a.k = k;
    a.v = v;
    a.kv_pos = kv_pos;
    a.n_kv = n_kv;
    a.kv_stride = shape_.kv_dim();
    a.H = shape_.H;
    a.G = shape_.G;
    a.d = shape_.d;
    a.scale = shape_.scale;
    a.causal = true;
    a.out = s.out;
    a.lse = s.lse;
    return a;
  }

  comm::Communicator& comm_;
  PassKVRing fwd_;
  RingCirculator circ_;
  HeadView view_;
  std::vector<float> delta_, acc_in_, part_[2], home_;
  std::vector<int32_t> pos_;
  int last_ = 0;
};

}  // namespace

std::unique_ptr<AttentionGrad> make_ring_attention_grad(AttnShape shape, kernels::ThreadPool& pool,
                                                        comm::Communicator& comm) {
  return std::make_unique<RingAttentionGrad>(shape, pool, comm);
}

}  // namespace tandem::parallel
