// Ring (pass-KV) attention for training (attention_grad.hpp).
//
// Forward: PassKVRing, as in inference; its log-sum-exp over all keys is kept for the
// backward.
//
// Backward: the K/V rows circulate again, in chunks of ring_chunk_rows() rows on the
// forward's conveyor (ring_attention.hpp; its three chunk buffers serve both passes). On
// a chunk of owner o, this rank adds its queries' gradient into dq and computes the
// chunk's dK/dV contribution into a fresh buffer; the chunk's accumulator, which the
// previous rank finished one tick earlier, arrives meanwhile, is added, and the sum goes
// on to the next rank - or, from the rank before the owner, home to the owner (a tag of
// its own), which writes it into its dk/dv rows. Every buffer is a chunk, so the memory
// per rank does not grow with the shard (a few chunks of K/V and accumulators); an
// accumulator moves while the next chunk is computed, overlapping work as the K/V
// transfer does. Volume per layer and rank in the backward: K/V of the others' rows (as
// the forward) plus the same volume of dK/dV, and its own rows' dK/dV home. The backward
// works on any head subset (PassKVRingGrad, ring_grad.hpp: the hybrid runs it on
// head-sharded blocks).
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
  size_t parts = 0;
  for (const Part& p : parts_) parts += p.buf.capacity() * sizeof(float);
  return (own_circ_ ? own_circ_->held_bytes() : 0) + held_bytes_of(acc_in_, home_, pos_) + parts;
}

// A buffer for this member's contribution to a chunk's dK/dV: one whose send is done.
PassKVRingGrad::Part& PassKVRingGrad::free_part(size_t floats) {
  for (Part& p : parts_) {
    if (p.send && !p.send->test()) continue;
    p.send.reset();
    p.buf.resize(floats);
    return p;
  }
  parts_.emplace_back();
  parts_.back().buf.resize(floats);
  return parts_.back();
}

void PassKVRingGrad::run(const HeadView& hv, const HeadGradArgs& g) {
  const int P = comm_.size(), r = comm_.rank();
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  const int64_t kvw = int64_t(hv.kv_heads) * hv.d, n = g.n_kv;
  std::fill(g.dq, g.dq + g.n_q * hv.q_heads * hv.d, 0.0f);
  std::fill(g.dk, g.dk + n * kvw, 0.0f);
  std::fill(g.dv, g.dv + n * kvw, 0.0f);
  const int32_t q_max = g.n_q > 0 ? *std::max_element(g.q_pos, g.q_pos + g.n_q) : 0;
  circ_.set_rows(n);
  int64_t most = 1;
  for (int j = 0; j < P; ++j) most = std::max(most, circ_.rows(j));
  // The conveyor's chunk (the same on every member): own chunk i is rows [i*chunk, ...).
  const int64_t chunk = std::min(ring_chunk_rows(), most);

  // This member's chunks come home in the order they left: the finished sum of own chunk
  // `home_chunk` arrives from the previous member (the last to add to it). One receive is
  // posted at a time, into home_, and written out to dk/dv when it lands.
  int64_t home_first = 0;  // first row of the chunk expected home
  std::unique_ptr<comm::Request> home;
  auto post_home = [&] {
    if (P == 1 || home_first >= n) return;
    const int64_t rows = std::min(chunk, n - home_first);
    home_.resize(size_t(2 * rows * kvw));
    home = comm_.irecv(home_.data(), home_.size() * sizeof(float), prev, home_tag_);
  };
  auto land_home = [&](const float* sum, int64_t first, int64_t rows) {
    std::memcpy(g.dk + first * kvw, sum, size_t(rows * kvw) * sizeof(float));
    std::memcpy(g.dv + first * kvw, sum + rows * kvw, size_t(rows * kvw) * sizeof(float));
  };
  auto check_home = [&](bool block) {
    while (home && (block ? (comm_.wait(*home), true) : home->test())) {
      const int64_t rows = std::min(chunk, n - home_first);
      land_home(home_.data(), home_first, rows);
      home_first += rows;
      home.reset();
      post_home();
    }
  };
  post_home();

  auto fill = [&](int64_t first, int64_t rows, float* dst) {
    std::memcpy(dst, g.k + first * kvw, size_t(rows * kvw) * sizeof(float));
    std::memcpy(dst + rows * kvw, g.v + first * kvw, size_t(rows * kvw) * sizeof(float));
    std::memcpy(dst + 2 * rows * kvw, g.kv_pos + first, size_t(rows) * sizeof(int32_t));
  };
  int64_t own_first = 0;  // P == 1: the next own chunk's first row
  auto on_chunk = [&](int owner, const float* blk, int64_t nb) {
    if (nb == 0) return;
    // The sum so far of this chunk's dK/dV (members owner .. rank-1), arriving now.
    std::unique_ptr<comm::Request> acc_recv;
    if (owner != r) {
      acc_in_.resize(size_t(2 * nb * kvw));
      acc_recv = comm_.irecv(acc_in_.data(), acc_in_.size() * sizeof(float), prev, acc_tag_);
    }
    Part& slot = free_part(size_t(2 * nb * kvw));
    std::vector<float>& part = slot.buf;
    std::fill(part.begin(), part.end(), 0.0f);
    pos_.resize(size_t(nb));
    std::memcpy(pos_.data(), blk + 2 * nb * kvw, size_t(nb) * sizeof(int32_t));
    if (g.n_q > 0 && *std::min_element(pos_.begin(), pos_.end()) <= q_max) {
      HeadGradArgs b = g;
      b.k = blk;
      b.v = blk + nb * kvw;
      b.kv_pos = pos_.data();
      b.n_kv = nb;
      b.dk = part.data();
      b.dv = part.data() + nb * kvw;
      // In query sub-blocks, with every transfer of this ring tested between them
      // (ring_attention.hpp: MPI moves a message only inside MPI calls).
      auto progress = [&] {
        circ_.progress();
        if (acc_recv && acc_recv->test()) acc_recv.reset();
        check_home(false);
        bool sending = false;
        for (Part& p : parts_)
          if (p.send && p.send->test()) p.send.reset();
          else sending = sending || p.send != nullptr;
        return circ_.in_flight() || acc_recv || home || sending;
      };
      const int64_t rows = progress_subblock_rows(circ_.subblocks(), g.n_q, nb);
      for (int64_t i0 = 0; i0 < g.n_q; i0 += rows) {
        ++circ_.stats().attention_calls;
        attend_heads_backward_rows(hv, b, i0, std::min(rows, g.n_q - i0), pool_);
        if (!progress()) {
          if (i0 + rows < g.n_q) attend_heads_backward_rows(hv, b, i0 + rows, g.n_q - i0 - rows, pool_);
          break;
        }
      }
    }
    if (acc_recv) comm_.wait(*acc_recv);
    if (owner != r) {
      for (size_t i = 0; i < part.size(); ++i) part[i] += acc_in_[i];
    }
    if (P == 1) {
      land_home(part.data(), own_first, nb);
      own_first += nb;
      return;
    }
    // On to the next member; the last to add (the owner's previous) sends it home.
    slot.send = comm_.isend(part.data(), part.size() * sizeof(float), next,
                            next == owner ? home_tag_ : acc_tag_);
    check_home(false);
  };
  circ_.run_chunked(chunk, 2 * kvw + 1, fill, on_chunk);
  check_home(true);
  for (Part& p : parts_)
    if (p.send) {
      comm_.wait(*p.send);
      p.send.reset();
    }
}

namespace {

constexpr int kForwardTag = 41, kAccTag = 42;  // and kAccTag + 1 (ring_grad.hpp)

class RingAttentionGrad final : public AttentionGrad {
 public:
  RingAttentionGrad(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm)
      : AttentionGrad(shape, pool), fwd_(comm, pool, kForwardTag),
        bwd_(fwd_.circulator(), pool, kAccTag),
        view_(full_head_view(shape.H, shape.G, shape.d, shape.scale)) {}
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
