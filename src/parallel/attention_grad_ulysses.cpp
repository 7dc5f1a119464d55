// Ulysses and hybrid (Ulysses x ring) attention for training (attention_grad.hpp).
//
// Ulysses: the members hold shards of the group's sequence (contiguous in training;
// positions drive the causal mask, so any placement gives the same result).
//   Forward: the all-to-all of q, k, v to head groups (HeadExchange::to_heads), causal
//   attention of this member's heads (split_heads(H, G, U)) over all n tokens of the
//   group, segment by segment, keeping the lse; then out and lse go back to the token
//   layout in one all-to-all.
//   Backward: delta = sum_e dout*out is formed on the token side (H floats a token, so
//   out itself does not travel); q, dout, lse, delta and k, v go to the head groups in one
//   all-to-all; attend_heads_backward gives dq, dk, dv of this member's heads for all n
//   tokens; one all-to-all returns dq, and dk, dv summed over the members that read a
//   replicated KV head (HeadExchange::to_tokens, the adjoint of to_heads).
//   Nothing is kept from forward to backward: one object serves every layer and layer
//   checkpointing recomputes forwards, so the backward simply redoes the exchange of
//   q, k, v (a per-layer cache of the head-layout tensors would save it: an optimization
//   for later). Volume per layer and member, with n tokens of the group: forward as the
//   inference exchange (head_exchange.hpp) plus n*H/U lse floats; backward about twice
//   the forward's (q, dout, k, v there; dq, dk, dv back) plus 2*n*H/U floats of lse and
//   delta.
//
// Hybrid UxR: HeadExchange within groups of U consecutive ranks, and across the R groups
// the ring of the members holding the same heads (as HybridAttention): PassKVRing in the
// forward, PassKVRingGrad (ring_grad.hpp) in the backward, on the head-sharded blocks of
// the group's tokens. Any U: a member whose heads straddle KV-head groups has several
// segments, each a kernel call per block. R = 1 is Ulysses; U = 1 is the ring.
#include <algorithm>

#include "parallel/ring_grad.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/held_bytes.hpp"
#include "tandem/kernels/backward.hpp"
#include "tandem/parallel/attention_grad.hpp"
#include "tandem/parallel/head_exchange.hpp"
#include "tandem/parallel/ring_attention.hpp"

namespace tandem::parallel {
namespace {

constexpr int kForwardTag = 51, kAccTag = 52;  // and kAccTag + 1 (ring_grad.hpp)

void fit(std::vector<float>& b, int64_t n) {
  if (b.size() < size_t(n)) b.resize(size_t(n));
}

class HeadShardedAttentionGrad final : public AttentionGrad {
 public:
  // Collective over comm when ring > 1 (splits it).
  HeadShardedAttentionGrad(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm,
                           int ulysses, int ring)
      : AttentionGrad(shape, pool) {
    if (ulysses < 1 || ring < 1 || int64_t{ulysses} * ring != comm.size())
      bad_input("hybrid {}x{} needs U x R = {} ranks, but {} are running", ulysses, ring,
                int64_t{ulysses} * ring, comm.size());
    TD_CHECK(shape.softcap == 0.0f);
    comm::Communicator* group = &comm;
    if (ring > 1) {
      const int r = comm.rank();
      group_comm_ = comm.split(r / ulysses, r);
      ring_comm_ = comm.split(r % ulysses, r);
      group = group_comm_.get();
      fwd_ = std::make_unique<PassKVRing>(*ring_comm_, pool, kForwardTag);
      bwd_ = std::make_unique<PassKVRingGrad>(fwd_->circulator(), pool, kAccTag);
    }
    ex_ = std::make_unique<HeadExchange>(shape, *group);
  }
  std::string_view name() const override { return fwd_ ? "hybrid" : "ulysses"; }
  size_t held_bytes() const override {
    return ex_->held_bytes() + (fwd_ ? fwd_->held_bytes() : 0) + (bwd_ ? bwd_->held_bytes() : 0) +
           held_bytes_of(q_, dout_, lse_, delta_, dq_, k_, v_, dk_, dv_, delta_tok_);
  }

  void forward(const AttnGradStep& s) override {
    ex_->begin_step(s.n, s.pos);
    const HeadView& hv = ex_->view();
    const int64_t n = ex_->tokens();
    const int32_t* pos = ex_->positions();
    ex_->to_heads(s.q, s.k, s.v);
    const float* lse = nullptr;
    if (fwd_) {
      fwd_->begin_step(n);
      fwd_->run(hv, ex_->q(), pos, n, ex_->k(), ex_->v(), pos, ex_->out());
      lse = fwd_->lse().data();
    } else {
      fit(lse_, n * hv.q_heads);
      attend_heads(hv, ex_->q(), pos, n, ex_->k(), ex_->v(), pos, n, ex_->out(), lse_.data(),
                   pool_);
      lse = lse_.data();
    }
    const HeadExchange::Moved qs[] = {{ex_->out(), s.out, shape_.d}, {lse, s.lse, 1}};
    ex_->to_tokens(qs, {});
  }

  void backward(const AttnGradStep& s, const float* dout, float* dq, float* dk,
                float* dv) override {
    ex_->begin_step(s.n, s.pos);
    const HeadView& hv = ex_->view();
    const int64_t n = ex_->tokens(), d = shape_.d;
    const int64_t qf = n * hv.q_heads * d, kvf = n * hv.kv_heads * d;
    fit(delta_tok_, s.n * shape_.H);
    kernels::attention_delta(s.out, dout, s.n, shape_.H, shape_.d, delta_tok_.data());
    for (std::vector<float>* b : {&q_, &dout_, &dq_}) fit(*b, qf);
    for (std::vector<float>* b : {&k_, &v_, &dk_, &dv_}) fit(*b, kvf);
    fit(lse_, n * hv.q_heads);
    fit(delta_, n * hv.q_heads);
    const HeadExchange::Moved qs[] = {{s.q, q_.data(), shape_.d},
                                      {dout, dout_.data(), shape_.d},
                                      {s.lse, lse_.data(), 1},
                                      {delta_tok_.data(), delta_.data(), 1}};
    const HeadExchange::Moved kvs[] = {{s.k, k_.data(), shape_.d}, {s.v, v_.data(), shape_.d}};
    ex_->to_heads(qs, kvs);

    HeadGradArgs g;
    g.q = q_.data();
    g.q_pos = ex_->positions();
    g.n_q = n;
    g.k = k_.data();
    g.v = v_.data();
    g.kv_pos = ex_->positions();
    g.n_kv = n;
    g.lse = lse_.data();
    g.dout = dout_.data();
    g.delta = delta_.data();
    g.dq = dq_.data();
    g.dk = dk_.data();
    g.dv = dv_.data();
    if (bwd_) {
      bwd_->run(hv, g);
    } else {
      std::fill(dq_.begin(), dq_.begin() + qf, 0.0f);
      std::fill(dk_.begin(), dk_.begin() + kvf, 0.0f);
      std::fill(dv_.begin(), dv_.begin() + kvf, 0.0f);
      attend_heads_backward(hv, g, pool_);
    }
    const HeadExchange::Moved dqs[] = {{dq_.data(), dq, shape_.d}};
    const HeadExchange::Moved dkvs[] = {{dk_.data(), dk, shape_.d}, {dv_.data(), dv, shape_.d}};
    ex_->to_tokens(dqs, dkvs);
  }

 private:
  std::unique_ptr<comm::Communicator> group_comm_, ring_comm_;
  std::unique_ptr<HeadExchange> ex_;
  std::unique_ptr<PassKVRing> fwd_;      // hybrid only
  std::unique_ptr<PassKVRingGrad> bwd_;  // hybrid only
  // Head layout (this member's heads, all n tokens of the group) but delta_tok_.
  std::vector<float> q_, dout_, lse_, delta_, dq_, k_, v_, dk_, dv_, delta_tok_;
};

}  // namespace

std::unique_ptr<AttentionGrad> make_ulysses_attention_grad(AttnShape shape,
                                                           kernels::ThreadPool& pool,
                                                           comm::Communicator& comm) {
  return std::make_unique<HeadShardedAttentionGrad>(shape, pool, comm, comm.size(), 1);
}

std::unique_ptr<AttentionGrad> make_hybrid_attention_grad(AttnShape shape,
                                                          kernels::ThreadPool& pool,
                                                          comm::Communicator& comm, int ulysses,
                                                          int ring) {
  return std::make_unique<HeadShardedAttentionGrad>(shape, pool, comm, ulysses, ring);
}

}  // namespace tandem::parallel
