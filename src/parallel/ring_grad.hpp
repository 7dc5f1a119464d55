#pragma once
// The backward of pass-KV (PassKVRing) on one head subset, for training: the ring
// attention's backward (attention_grad_ring.cpp), also run by the hybrid across its
// Ulysses groups on head-sharded blocks (attention_grad_ulysses.cpp).
#include <deque>
#include <memory>
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/head_split.hpp"
#include "tandem/parallel/ring_attention.hpp"

namespace tandem::parallel {

class PassKVRingGrad {
 public:
  // Uses tags tag (K/V blocks) and tag + 1 (dK/dV accumulators) on `ring`.
  PassKVRingGrad(comm::Communicator& ring, kernels::ThreadPool& pool, int tag)
      : comm_(ring), pool_(pool), own_circ_(std::make_unique<RingCirculator>(ring, tag)),
        circ_(*own_circ_), acc_tag_(tag + 1), home_tag_(tag + 2) {}
  // Circulates K/V with the forward's circulator (its chunk buffers serve both passes,
  // which never run at once); accumulators on tags acc_tag and acc_tag + 1.
  PassKVRingGrad(RingCirculator& shared, kernels::ThreadPool& pool, int acc_tag)
      : comm_(shared.comm()), pool_(pool), circ_(shared), acc_tag_(acc_tag), home_tag_(acc_tag + 1) {}
  // g holds this member's queries (q, q_pos, n_q, with the forward's lse over the keys of
  // every member, dout and delta; hv's layout) and its own K/V rows (k, v, kv_pos, n_kv).
  // Writes dq (this member's queries: the gradient through every member's keys) and dk,
  // dv (its own rows: the gradient through every member's queries). Collective.
  void run(const HeadView& hv, const HeadGradArgs& g);
  size_t held_bytes() const;  // its buffers, and the circulator's when its own

 private:
  comm::Communicator& comm_;
  kernels::ThreadPool& pool_;
  struct Part {  // this member's contribution to a chunk, and its send in flight
    std::vector<float> buf;
    std::unique_ptr<comm::Request> send;
  };
  Part& free_part(size_t floats);

  std::unique_ptr<RingCirculator> own_circ_;
  RingCirculator& circ_;
  int acc_tag_, home_tag_;  // chunks' sums on their way, and arriving home
  std::vector<float> acc_in_, home_;
  std::deque<Part> parts_;  // stable addresses while sends are in flight
  std::vector<int32_t> pos_;
};

}  // namespace tandem::parallel
