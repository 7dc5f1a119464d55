#pragma once
// Sequence-parallel runs of the whole model: each rank runs the token-local ops on its
// shard of the sequence; attention goes through the scheme's strategy.
#include <span>
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/scheme.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/generate.hpp"
#include "tandem/runtime/memory_estimate.hpp"

namespace tandem {

enum class LogitsWanted { None, Last, All };

struct ShardedPrefill {
  std::vector<int64_t> indices;  // global indices of the tokens this rank holds
  // All: [indices.size()][V]. Last: the last token's row, on every rank. None: empty.
  std::vector<float> logits;
};

// Prefills `ids` (positions 0..N-1) split by `scheme` across the ranks of `comm`.
// `cache` must be empty, with room for this rank's shard (and later decode tokens).
ShardedPrefill sp_prefill(Engine& engine, KVCache& cache, comm::Communicator& comm,
                          const parallel::Scheme& scheme, std::span<const int32_t> ids,
                          LogitsWanted wanted);

// Every rank's logits rows gathered in global order ([N][V]) on every rank.
std::vector<float> gather_logits(comm::Communicator& comm, const ShardedPrefill& part,
                                 int64_t n, int64_t vocab);

// Tokens of this rank's shard plus its share of n_decode round-robin decode tokens.
int64_t sp_cache_capacity(int64_t n_prompt, int64_t n_decode, int ranks, int rank,
                          const parallel::Scheme& scheme);

// Memory this rank needs for a sequence-parallel prefill of n_prompt tokens followed by
// n_decode decode steps (weights, its KV shard, activations of its shard, workspace).
MemoryEstimate sp_memory_estimate(const Model& model, const comm::Communicator& comm,
                                  const parallel::Scheme& scheme, int64_t n_prompt,
                                  int64_t n_decode);

// Largest prompt length whose per-rank estimate fits `budget` on every one of `ranks`
// ranks (0 when even one token does not fit).
int64_t sp_max_tokens(const Model& model, int ranks, const parallel::Scheme& scheme,
                      uint64_t budget);

// Seconds this rank's traffic of a run takes when nothing overlaps it: `messages`
// blocking ring exchanges (send to rank+1, receive from rank-1) of bytes/messages bytes
// each, timed on a sample and scaled. With the time a run actually waited, the hidden
// fraction of communication is 1 - waited / alone. Collective.
double sp_comm_alone_seconds(comm::Communicator& comm, uint64_t bytes, uint64_t messages);

// Generation: parallel prefill, then decoding against the KV cache sharded across the
// ranks (every rank runs the same tokens and samples the same ids). on_token runs on
// every rank. Stats as in generate().
GenerateStats sp_generate(Engine& engine, KVCache& cache, comm::Communicator& comm,
                          const parallel::Scheme& scheme, std::span<const int32_t> prompt,
                          const GenerateParams& params,
                          const std::function<void(int32_t)>& on_token,
                          std::vector<int32_t>* out = nullptr);

}  // namespace tandem
