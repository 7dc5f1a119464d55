#pragma once
// The Ulysses all-to-all: moves attention inputs from the sequence-sharded layout (each
// member of a group holds all heads of its own tokens) to the head-sharded layout (each
// member holds its head subset, split_heads(H, G, U), for all tokens of the group), and
// outputs back. Used by UlyssesAttention (the group is every rank) and HybridAttention
// (groups of U consecutive ranks).
//
// Tokens of the group are ordered by member, then by their order on the member; their
// positions travel once per step (begin_step), not per layer.
//
// Volume per layer and member, with n tokens of the group (~n/U per member): to_heads
// sends (U-1)/U of its m*(H + 2G)*d input floats (about m*(H/U + 2*ng)*d to each of the
// others, ng = KV heads of the receiver's subset, >= G/U and replicated when U > G);
// to_tokens sends back (U-1)/U of its n*nh*d outputs.
//
// Training moves more tensors each way (attention_grad_ulysses.cpp): the general
// to_heads / to_tokens take lists of tensors with w floats per head, query-head ones and
// KV-head ones, moved in one all-to-all. Back to tokens, a KV-head tensor is summed over
// the members holding a replica of the head: the adjoint of to_heads, which makes the
// gradient of replicated K/V.
#include <span>
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/head_split.hpp"
#include "tandem/parallel/sequence_attention.hpp"

namespace tandem::parallel {

class HeadExchange {
 public:
  HeadExchange(AttnShape shape, comm::Communicator& group);

  // Collective, once per step: every member's token count and positions.
  void begin_step(int64_t m, const int32_t* pos);
  int64_t tokens() const { return n_; }                 // n: tokens of the whole group
  int64_t member_tokens(int member) const { return counts_[size_t(member)]; }
  const int32_t* positions() const { return pos_.data(); }  // [n], member order
  const HeadGroup& group() const { return groups_[size_t(comm_.rank())]; }
  const HeadView& view() const { return view_; }

  // Sequence-sharded -> head-sharded: q [m][H*d], k/v [m][G*d] of this member's m
  // tokens become q(), k(), v() of all n tokens in view()'s layout. Collective.
  void to_heads(const float* q, const float* k, const float* v);
  const float* q() const { return q_.data(); }
  const float* k() const { return k_.data(); }
  const float* v() const { return v_.data(); }
  // Outputs of this member's heads for all n tokens (view()'s layout), for the caller.
  float* out() { return out_.data(); }
  // Head-sharded -> sequence-sharded: every member's out() -> out [m][H*d] of this
  // member's tokens. Collective.
  void to_tokens(float* out);

  // One tensor to move, w floats per head. Query-head tensors: [m][H*w] on the token side,
  // view()'s segment-major layout with w floats per head ([n][nq_s][w] at n*q0_s*w) on the
  // head side (w = d: q, out; w = 1: lse). KV-head tensors: [m][G*w] on the token side,
  // [n][kv_heads*w] on the head side. src and dst are the caller's, sized so.
  struct Moved {
    const float* src = nullptr;
    float* dst = nullptr;
    int w = 0;
  };
  // Token side -> head side for every tensor of qs and kvs, one all-to-all. Collective.
  void to_heads(std::span<const Moved> qs, std::span<const Moved> kvs);
  // Head side -> token side, one all-to-all; a KV-head tensor's dst is the sum over the
  // members that hold the head (written). Collective.
  void to_tokens(std::span<const Moved> qs, std::span<const Moved> kvs);
  size_t held_bytes() const;  // its head-side tensors and message buffers

 private:
  // Floats per token of this member's tensors on the head side and member j's on the
  // token side.
  int64_t head_floats(std::span<const Moved> qs, std::span<const Moved> kvs) const;
  int64_t token_floats(int j, std::span<const Moved> qs, std::span<const Moved> kvs) const;

  AttnShape shape_;
  comm::Communicator& comm_;
  std::vector<HeadGroup> groups_;
  HeadView view_;
  std::vector<int64_t> counts_, first_;  // tokens of each member, index of its first token
  int64_t n_ = 0;
  std::vector<int32_t> pos_;
  std::vector<float> q_, k_, v_, out_, send_, recv_;
  std::vector<size_t> sbytes_, soff_, rbytes_, roff_;
};

}  // namespace tandem::parallel
