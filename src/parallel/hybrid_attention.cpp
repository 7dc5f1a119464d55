#include "tandem/parallel/hybrid_attention.hpp"

#include "tandem/core/error.hpp"

namespace tandem::parallel {

HybridAttention::HybridAttention(AttnShape shape, kernels::ThreadPool& pool,
                                 comm::Communicator& comm, int ulysses, int ring)
    : SequenceAttention(shape) {
  if (ulysses < 1 || ring < 1 || ulysses * ring != comm.size())
    bad_input("hybrid {}x{} needs U x R = {} ranks, but {} are running", ulysses, ring,
              ulysses * ring, comm.size());
  const int r = comm.rank();
  group_comm_ = comm.split(r / ulysses, r);
  ring_comm_ = comm.split(r % ulysses, r);
  exchange_ = std::make_unique<HeadExchange>(shape, *group_comm_);
  ring_ = std::make_unique<PassKVRing>(*ring_comm_, pool);
}

int64_t HybridAttention::begin_step(KVCache& cache, int64_t m, const int32_t* pos) {
  if (cache.size() != 0)
    bad_input("hybrid attention prefills empty KV caches; this rank's cache holds {} tokens",
              cache.size());
  exchange_->begin_step(m, pos);
  ring_->begin_step(exchange_->tokens());
  return SequenceAttention::begin_step(cache, m, pos);
}

void HybridAttention::attend(KVCache& cache, int64_t slot, const AttnStep& s) {
  store_kv(cache, slot, s);
  exchange_->to_heads(s.q, s.k, s.v);
  const int64_t n = exchange_->tokens();
  const int32_t* pos = exchange_->positions();
  ring_->run(exchange_->view(), exchange_->q(), pos, n, exchange_->k(), exchange_->v(), pos,
             exchange_->out());
  exchange_->to_tokens(s.out);
}

}  // namespace tandem::parallel
