#include "tandem/parallel/scheme.hpp"

#include <charconv>

#include "tandem/core/error.hpp"
#include "tandem/parallel/auto_attention.hpp"
#include "tandem/parallel/hybrid_attention.hpp"
#include "tandem/parallel/pass_q_attention.hpp"
#include "tandem/parallel/ring_attention.hpp"
#include "tandem/parallel/ulysses_attention.hpp"

namespace tandem::parallel {

Scheme parse_scheme(std::string_view text, int ranks, std::string_view flag) {
  Scheme s;
  s.name = std::string(text);
  if (text == "ring") {
    s.kind = Scheme::Kind::Ring;
  } else if (text == "zigzag") {
    s.kind = Scheme::Kind::Ring;
    s.placement = Placement::Zigzag;
  } else if (text == "ulysses") {
    s.kind = Scheme::Kind::Ulysses;
  } else if (text == "pass-q") {
    s.kind = Scheme::Kind::PassQ;
  } else if (text == "auto") {
    s.kind = Scheme::Kind::Auto;
  } else if (text.rfind("hybrid:", 0) == 0) {
    s.kind = Scheme::Kind::Hybrid;
    const std::string_view dims = text.substr(7);
    const auto x = dims.find('x');
    auto parse = [&](std::string_view v, int& out) {
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
      return ec == std::errc() && p == v.data() + v.size() && out > 0;
    };
    if (x == std::string_view::npos || !parse(dims.substr(0, x), s.ulysses) ||
        !parse(dims.substr(x + 1), s.ring))
      bad_input("{}: '{}' should be hybrid:UxR (e.g. hybrid:2x2)", flag, text);
    // In 64 bits: U and R are each below 2^31, so their product cannot overflow.
    const int64_t product = int64_t{s.ulysses} * s.ring;
    if (product != ranks)
      bad_input("{}: {} needs U x R = {} ranks, but {} are running", flag, text, product, ranks);
  } else {
    bad_input("{}: unknown scheme '{}' (ring, zigzag, ulysses, hybrid:UxR, pass-q, auto)", flag,
              text);
  }
  return s;
}

uint64_t scheme_workspace_bytes(const Scheme& s, AttnShape shape, int64_t m_local,
                                int64_t n_total, int ranks) {
  // Estimates for a prefill onto empty caches, in floats; see each strategy's header.
  const int64_t max_shard = n_total / ranks + 2;  // largest shard, any placement
  const int64_t q = shape.q_dim(), kv = shape.kv_dim(), H = shape.H;
  const int64_t partials = m_local * (q + 2 * H);        // partial out + two lse rows
  const int64_t ring_blocks = 2 * max_shard * (2 * kv + 1);  // two K/V blocks in flight
  // All-to-all send and receive buffers of Q, K, V and O for this rank's share.
  const int64_t exchange = 2 * (m_local + max_shard) * (2 * q + 2 * kv);
  int64_t floats = 0;
  switch (s.kind) {
    case Scheme::Kind::Ring:
    case Scheme::Kind::Auto: floats = ring_blocks + partials; break;
    case Scheme::Kind::Ulysses: floats = exchange + partials; break;
    case Scheme::Kind::Hybrid: floats = exchange + ring_blocks + partials; break;
    // Query blocks in flight, and the partials of every visiting block kept until sent.
    case Scheme::Kind::PassQ: floats = 2 * max_shard * (q + 1) + 2 * n_total * (q + H); break;
  }
  return uint64_t(floats) * sizeof(float);
}

std::unique_ptr<SequenceAttention> make_prefill_attention(const Scheme& s, AttnShape shape,
                                                          kernels::ThreadPool& pool,
                                                          comm::Communicator& comm) {
  switch (s.kind) {
    case Scheme::Kind::Ring: return std::make_unique<RingAttention>(shape, pool, comm);
    case Scheme::Kind::Ulysses: return std::make_unique<UlyssesAttention>(shape, pool, comm);
    case Scheme::Kind::Hybrid:
      return std::make_unique<HybridAttention>(shape, pool, comm, s.ulysses, s.ring);
    case Scheme::Kind::PassQ: return std::make_unique<PassQAttention>(shape, pool, comm);
    case Scheme::Kind::Auto: return std::make_unique<AutoAttention>(shape, pool, comm);
  }
  bad_input("--sp {}: unknown scheme", s.name);
}

}  // namespace tandem::parallel
