#pragma once
// Attention for training: the forward of one layer over a whole sequence (no KV cache),
// keeping what its backward needs, and the backward. The sequence may be spread over the
// ranks of a communicator: each rank holds its shard of the tokens (any placement; each
// token keeps its global position) and runs every token-local op itself; only attention
// reaches across ranks. Every strategy's result on P ranks equals the one-rank result on
// the gathered sequence up to float summation order.
//   local    one rank (the reference);
//   ring     pass-KV ring (attention_grad_ring.cpp): K/V blocks circulate in the forward;
//            in the backward K/V circulate again with their dK/dV accumulators, which
//            arrive back at their owner after a full turn;
//   ulysses  all-to-all from token shards to head groups and back (both passes;
//            attention_grad_ulysses.cpp);
//   hybrid   Ulysses within groups of U ranks, the pass-KV ring across the R groups.
#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "tandem/kernels/thread_pool.hpp"
#include "tandem/parallel/sequence_attention.hpp"
#include "tandem/parallel/sharding.hpp"

namespace tandem::comm {
class Communicator;
}

namespace tandem::parallel {

// One layer of one sequence on this rank: n tokens at global positions pos (causal mask).
struct AttnGradStep {
  int64_t n = 0;
  const int32_t* pos = nullptr;  // [n]
  const float* q = nullptr;      // [n][H*d], rotary applied
  const float* k = nullptr;      // [n][G*d], rotary applied
  const float* v = nullptr;      // [n][G*d]
  float* out = nullptr;          // forward: written [n][H*d]; backward: read
  float* lse = nullptr;          // forward: written [n][H];   backward: read
};

class AttentionGrad {
 public:
  AttentionGrad(AttnShape shape, kernels::ThreadPool& pool) : shape_(shape), pool_(pool) {}
  virtual ~AttentionGrad() = default;
  virtual std::string_view name() const = 0;

  // out and lse of this rank's queries over every visible key of the sequence.
  virtual void forward(const AttnGradStep& s) = 0;
  // From dout [n][H*d]: writes dq [n][H*d], dk and dv [n][G*d] of this rank's tokens
  // (the gradient through every rank's queries that see them).
  virtual void backward(const AttnGradStep& s, const float* dout, float* dq, float* dk,
                        float* dv) = 0;

  const AttnShape& shape() const { return shape_; }
  // Bytes of the buffers this strategy holds now (they grow to the largest step run; the
  // trainer's memory check extrapolates them from small probe steps, held_bytes_probe).
  virtual size_t held_bytes() const { return 0; }

 protected:
  AttnShape shape_;
  kernels::ThreadPool& pool_;
};

// What a strategy holds for shards of n tokens per rank: measured at probe sizes,
// interpolated linearly between them and extrapolated from the last two above them.
struct WorkspaceModel {
  std::vector<std::pair<int64_t, double>> points;  // (tokens per rank, bytes held), ascending
  size_t bytes(int64_t n) const;
};
// Runs attn's forward and backward on zeros at shards of 64, 128, ... up to max_tokens
// per rank (positions laid out by `placement` over the ranks of its communicator) and
// reads its held_bytes() after each; probing past any fixed-size buffer (the ring's
// chunks) makes the extrapolation hold. Collective over the strategy's ranks.
WorkspaceModel probe_workspace(AttentionGrad& attn, int ranks, int rank, Placement placement,
                               int64_t max_tokens = 2048);

std::unique_ptr<AttentionGrad> make_local_attention_grad(AttnShape shape,
                                                         kernels::ThreadPool& pool);
// Pass-KV ring over the ranks of comm (any placement: positions drive the causal mask).
std::unique_ptr<AttentionGrad> make_ring_attention_grad(AttnShape shape,
                                                        kernels::ThreadPool& pool,
                                                        comm::Communicator& comm);

// Ulysses over the ranks of comm (HeadExchange: any head split, KV heads replicated where
// several ranks read them).
std::unique_ptr<AttentionGrad> make_ulysses_attention_grad(AttnShape shape,
                                                           kernels::ThreadPool& pool,
                                                           comm::Communicator& comm);
// Hybrid UxR (hybrid_attention.hpp's layout: groups of `ulysses` consecutive ranks, rings
// of the ranks with the same place in their groups); ulysses * ring must equal comm.size()
// (Error(BadInput) otherwise). Collective: splits comm when ring > 1.
std::unique_ptr<AttentionGrad> make_hybrid_attention_grad(AttnShape shape,
                                                          kernels::ThreadPool& pool,
                                                          comm::Communicator& comm, int ulysses,
                                                          int ring);

}  // namespace tandem::parallel
