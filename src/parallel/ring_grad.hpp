#pragma once
// The backward of pass-KV (PassKVRing) on one head subset, for training: the ring
// attention's backward (attention_grad_ring.cpp), also run by the hybrid across its
// Ulysses groups on head-sharded blocks (attention_grad_ulysses.cpp).
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
        circ_(*own_circ_), acc_tag_(tag + 1) {}
  // Circulates K/V with the forward's circulator (its block buffers serve both passes,
  // which never run at once); accumulators on tag acc_tag.
  PassKVRingGrad(RingCirculator& shared, kernels::ThreadPool& pool, int acc_tag)
      : comm_(shared.comm()), pool_(pool), circ_(shared), acc_tag_(acc_tag) {}
  // g holds this member's queries (q, q_pos, n_q, with the forward's lse over the keys of
  // every member, dout and delta; hv's layout) and its own K/V rows (k, v, kv_pos, n_kv).
  // Writes dq (this member's queries: the gradient through every member's keys) and dk,
  // dv (its own rows: the gradient through every member's queries). Collective.
  void run(const HeadView& hv, const HeadGradArgs& g);
  size_t held_bytes() const;  // its buffers, and the circulator's when its own

 private:
  comm::Communicator& comm_;
  kernels::ThreadPool& pool_;
  std::unique_ptr<RingCirculator> own_circ_;
  RingCirculator& circ_;
  int acc_tag_;
  // acc_in_ also receives this member's finished dK/dV at the end.
  std::vector<float> acc_in_, part_[2];
  std::vector<int32_t> pos_;
};

}  // namespace tandem::parallel
