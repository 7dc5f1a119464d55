#include "tandem/parallel/sequence_attention.hpp"

#include <algorithm>

#include "tandem/core/error.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/parallel/scheme.hpp"

namespace tandem::parallel {

int64_t SequenceAttention::begin_step(KVCache& cache, int64_t m, const int32_t* pos) {
  return cache.append(m, pos);
}

void SequenceAttention::store_kv(KVCache& cache, int64_t slot, const AttnStep& s, int64_t first,
                                 int64_t count) const {
  if (count < 0) count = s.m - first;
  const int64_t kv = shape_.kv_dim();
  cache.write(s.layer, slot, count, s.k + first * kv, s.v + first * kv);
}

AttnStep SequenceAttention::as_stored(const KVCache& cache, const AttnStep& s) {
  if (cache.type() == DType::F32) return s;
  const size_t n = size_t(s.m * shape_.kv_dim());
  stored_k_.resize(n);
  stored_v_.resize(n);
  cache.round_trip(s.k, stored_k_.data(), s.m);
  cache.round_trip(s.v, stored_v_.data(), s.m);
  AttnStep t = s;
  t.k = stored_k_.data();
  t.v = stored_v_.data();
  return t;
}

void SequenceAttention::count_pairs(const int32_t* q_pos, int64_t n_q, const int32_t* kv_pos,
                                    int64_t n_kv, int64_t heads) {
  head_pairs_ += visible_pairs(q_pos, n_q, kv_pos, n_kv) * uint64_t(heads);
}

void SequenceAttention::read_cache_positions(const KVCache& cache) {
  cache_pos_.resize(size_t(cache.size()));
  cache.read_positions(0, cache.size(), cache_pos_.data());
}

kernels::AttentionArgs SequenceAttention::cache_args(const AttnStep& s, const KVCache& cache) const {
  auto a = kernel_args(s, nullptr, nullptr, nullptr, cache.size());
  a.pages = cache.pages(s.layer);
  return a;
}

kernels::AttentionArgs SequenceAttention::kernel_args(const AttnStep& s, const float* k,
                                                      const float* v, const int32_t* kv_pos,
                                                      int64_t n_kv) const {
  kernels::AttentionArgs a;
  a.q = s.q;
  a.q_pos = s.pos;
  a.n_q = s.m;
  a.k = k;
  a.v = v;
  a.kv_pos = kv_pos;
  a.n_kv = n_kv;
  a.kv_stride = shape_.kv_dim();
  a.H = shape_.H;
  a.G = shape_.G;
  a.d = shape_.d;
  a.scale = shape_.scale;
  a.softcap = shape_.softcap;
  a.window = s.window;
  return a;
}

void LocalAttention::attend(KVCache& cache, int64_t slot, const AttnStep& s) {
  store_kv(cache, slot, s);
  auto a = cache_args(s, cache);
  a.out = s.out;
  run_attention(a, kernel_, pool_);
}

}  // namespace tandem::parallel

namespace tandem::parallel {

const SchemeDesc& local_scheme() {
  static const SchemeDesc d = [] {
    SchemeDesc x;
    x.name = x.syntax = "local";
    x.help = "one rank, the whole sequence: the single pipeline (the default without --sp)";
    x.onto_cache = true;
    x.lockstep = false;
    x.parse = [](const SchemeDesc& self, std::string_view text, int ranks,
                 std::string_view flag) -> std::optional<Scheme> {
      if (text != self.name) return std::nullopt;
      if (ranks > 1) bad_input("{}: local runs on one rank, but {} are running", flag, ranks);
      Scheme s = scheme_parts::named(self);
      s.fixed_ranks = 1;
      return s;
    };
    x.configure = [](const SchemeDesc& self, int P, int, std::string* why) -> std::optional<Scheme> {
      if (P == 1) return scheme_parts::named(self);
      if (why) *why = "runs on one rank";
      return std::nullopt;
    };
    x.make = [](const Scheme&, AttnShape shape, kernels::ThreadPool& pool,
                comm::Communicator&) -> std::unique_ptr<SequenceAttention> {
      return std::make_unique<LocalAttention>(shape, pool);
    };
    x.workspace_bytes = [](const Scheme&, AttnShape, int64_t, int64_t, int) -> uint64_t { return 0; };
    x.cost = [](const Scheme&, const CostShape& shape, int64_t n, int ranks) {
      CostPhase p;
      p.head_pairs.assign(size_t(ranks), 0.0);
      p.bytes.assign(size_t(ranks), 0.0);
      p.head_pairs[0] = range_pairs(TokenRange{0, n}, TokenRange{0, n}) * double(shape.H);
      p.query_tokens.assign(size_t(ranks), 0.0);
      p.query_heads.assign(size_t(ranks), 0.0);
      p.query_tokens[0] = double(n);
      p.query_heads[0] = double(shape.H);
      return CostPhases{p};
    };
    return x;
  }();
  return d;
}

}  // namespace tandem::parallel
