#include "tandem/parallel/hybrid_attention.hpp"

#include <fmt/format.h>

#include <charconv>

#include "tandem/core/error.hpp"
#include "tandem/parallel/scheme.hpp"

namespace tandem::parallel {

HybridAttention::HybridAttention(AttnShape shape, kernels::ThreadPool& pool,
                                 comm::Communicator& comm, int ulysses, int ring)
    : SequenceAttention(shape, pool) {
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
  const AttnStep t = as_stored(cache, s);  // attend to K/V as every rank's cache holds them
  exchange_->to_heads(t.q, t.k, t.v);
  const int64_t n = exchange_->tokens();
  const int32_t* pos = exchange_->positions();
  ring_->run(with_window(exchange_->view(), s.window), exchange_->q(), pos, n, exchange_->k(),
             exchange_->v(), pos, exchange_->out());
  exchange_->to_tokens(s.out);
}

}  // namespace tandem::parallel

namespace tandem::parallel {

const SchemeDesc& hybrid_scheme() {
  static const SchemeDesc d = [] {
    SchemeDesc x;
    x.name = "hybrid";
    x.syntax = "hybrid:UxR";
    x.help = "Ulysses in groups of U ranks, pass-KV ring across the R groups (U x R = P)";
    x.parse = [](const SchemeDesc& self, std::string_view text, int ranks,
                 std::string_view flag) -> std::optional<Scheme> {
      if (text.rfind("hybrid", 0) != 0) return std::nullopt;
      Scheme s = scheme_parts::named(self);
      s.name = std::string(text);
      const auto colon = text.find(':');
      const std::string_view dims = colon == std::string_view::npos ? "" : text.substr(colon + 1);
      const auto x_at = dims.find('x');
      auto number = [](std::string_view v, int& out) {
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
        return ec == std::errc() && p == v.data() + v.size() && out > 0;
      };
      if (colon != 6 || x_at == std::string_view::npos || !number(dims.substr(0, x_at), s.ulysses) ||
          !number(dims.substr(x_at + 1), s.ring))
        bad_input("{}: '{}' should be hybrid:UxR (e.g. hybrid:2x2)", flag, text);
      // In 64 bits: U and R are each below 2^31, so their product cannot overflow.
      const int64_t product = int64_t{s.ulysses} * s.ring;
      if (product > (int64_t{1} << 20)) bad_input("{}: {} asks for too many ranks", flag, text);
      s.fixed_ranks = int(product);
      if (ranks > 0 && product != ranks)
        bad_input("{}: {} needs U x R = {} ranks, but {} are running", flag, text, product, ranks);
      return s;
    };
    x.configure = [](const SchemeDesc& self, int P, int K, std::string* why) -> std::optional<Scheme> {
      // Ulysses inside a node, the ring across nodes: U = K devices per node. On one node
      // it would be Ulysses itself.
      if (P <= K || P % K != 0) {
        if (why) *why = P <= K ? "one node: the same as ulysses" : "P is not a multiple of K";
        return std::nullopt;
      }
      return self.parse(self, fmt::format("hybrid:{}x{}", K, P / K), P, "--gpus-per-node");
    };
    x.make = [](const Scheme& s, AttnShape shape, kernels::ThreadPool& pool,
                comm::Communicator& comm) -> std::unique_ptr<SequenceAttention> {
      return std::make_unique<HybridAttention>(shape, pool, comm, s.ulysses, s.ring);
    };
    x.workspace_bytes = [](const Scheme& s, AttnShape shape, int64_t m_local, int64_t n_total,
                           int ranks) {
      return scheme_parts::bytes_of(scheme_parts::exchange_floats(shape, m_local, n_total, ranks) +
                                    scheme_parts::ring_block_floats(s, shape, n_total, ranks) +
                                    scheme_parts::partial_floats(shape, m_local));
    };
    x.cost = [](const Scheme& s, const CostShape& shape, int64_t n, int ranks) {
      const int U = s.ulysses, R = s.ring;
      const HeadExchangeCost ex = head_exchange_cost(shape, n, ranks, s.placement, U);
      RingSpec r;
      r.R = R;
      r.stride = U;
      for (int g = 0; g < R; ++g) r.held.push_back(group_ranges(n, ranks, s.placement, g * U, U));
      for (int q = 0; q < ranks; ++q) {
        r.member_of.push_back(q / U);
        r.token_bytes.push_back(2.0 * ex.kv_heads[size_t(q)] * double(shape.d) * shape.b +
                                kPositionBytes);
      }
      r.heads = ex.q_heads;
      r.chunk_rows = double(ring_chunk_rows(s.chunk));
      CostPhases phases{ex.to_heads};
      for (CostPhase& p : ring_phases(r)) phases.push_back(std::move(p));
      phases.push_back(ex.to_tokens);
      return phases;
    };
    return x;
  }();
  return d;
}

}  // namespace tandem::parallel
