#include "tandem/parallel/scheme.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "tandem/core/error.hpp"
#include "tandem/parallel/auto_attention.hpp"
#include "tandem/parallel/ring_attention.hpp"

namespace tandem::parallel {

// Each scheme's descriptor lives in the file of its strategy.
const SchemeDesc& local_scheme();
const SchemeDesc& ring_scheme();
const SchemeDesc& zigzag_scheme();
const SchemeDesc& ulysses_scheme();
const SchemeDesc& hybrid_scheme();
const SchemeDesc& pass_q_scheme();
const SchemeDesc& auto_scheme();

const std::vector<const SchemeDesc*>& scheme_registry() {
  // One line per scheme.
  static const std::vector<const SchemeDesc*> all = {
      &local_scheme(), &ring_scheme(), &zigzag_scheme(), &ulysses_scheme(),
      &hybrid_scheme(), &pass_q_scheme(), &auto_scheme(),
  };
  return all;
}

std::string_view Scheme::kind() const { return desc ? desc->name : std::string_view(); }

const SchemeDesc* find_scheme(std::string_view name) {
  for (const SchemeDesc* d : scheme_registry())
    if (d->name == name) return d;
  return nullptr;
}

std::string scheme_list(bool with_local) {
  std::string s;
  for (const SchemeDesc* d : scheme_registry()) {
    if (!with_local && d->name == "local") continue;
    s += (s.empty() ? "" : ", ") + std::string(d->syntax);
  }
  return s;
}

std::string scheme_help() {
  std::string s;
  for (const SchemeDesc* d : scheme_registry())
    s += fmt::format("  {:<11} {}\n", d->syntax, d->help);
  return s;
}

Scheme scheme_parts::named(const SchemeDesc& d) {
  Scheme s;
  s.desc = &d;
  s.name = std::string(d.name);
  s.placement = d.placement;
  return s;
}

int64_t scheme_parts::ring_block_floats(const Scheme& s, AttnShape shape, int64_t n_total,
                                        int ranks) {
  const int64_t max_shard = n_total / ranks + 2;  // largest shard, any placement
  // Up to three conveyor chunks (ring_attention.hpp), none longer than a shard.
  return 3 * std::min(max_shard, ring_chunk_rows(s.chunk)) * (2 * shape.kv_dim() + 1);
}

int64_t default_sp_chunk(int ranks) {
  return std::max(kMinSpChunk, kDefaultSpChunk / std::max(ranks, 1));
}

int64_t resolve_sp_chunk(int64_t chunk, int ranks) {
  return chunk == kAutoSpChunk ? default_sp_chunk(ranks) : chunk;
}

int64_t scheme_parts::partial_floats(AttnShape shape, int64_t m_local) {
  return m_local * (shape.q_dim() + 2 * shape.H);
}

int64_t scheme_parts::exchange_floats(AttnShape shape, int64_t m_local, int64_t n_total, int ranks) {
  const int64_t max_shard = n_total / ranks + 2;
  return 2 * (m_local + max_shard) * (2 * shape.q_dim() + 2 * shape.kv_dim());
}

CostPhases scheme_parts::ring_cost(const Scheme& s, const CostShape& shape, int64_t n, int ranks,
                                   RingMove move) {
  const int64_t band = scheme_band(s, n, ranks);
  std::vector<std::vector<TokenRange>> shard;
  for (int j = 0; j < ranks; ++j) shard.push_back(shard_ranges(n, ranks, j, s.placement, band));
  const double kv_token = 2.0 * double(shape.G * shape.d) * shape.b + kPositionBytes;
  const double q_token = double(shape.H * shape.d) * shape.b + kPositionBytes;
  const double out_token = double(shape.H * shape.d) * shape.b + 4.0 * double(shape.H);
  CostPhases all;
  int64_t cached = 0;  // tokens of the bands before this one
  for (const TokenRange& b : bands_of(n, band)) {
    RingSpec r;
    r.R = ranks;
    r.pass_q = move == RingMove::Queries ||
               (move == RingMove::Auto && prefer_pass_q(b.size(), cached, int(shape.H), int(shape.G)));
    for (int j = 0; j < ranks; ++j) {
      std::vector<TokenRange> keys, queries;
      for (const TokenRange& t : shard[size_t(j)]) {
        if (t.begin >= b.end && t.size() > 0) continue;  // a later band
        keys.push_back(t);
        if (t.begin >= b.begin || t.size() == 0) queries.push_back(t);
      }
      r.held.push_back(std::move(keys));
      r.queries.push_back(std::move(queries));
      r.member_of.push_back(j);
    }
    r.heads.assign(size_t(ranks), double(shape.H));
    r.token_bytes.assign(size_t(ranks), r.pass_q ? q_token : kv_token);
    r.out_bytes.assign(size_t(ranks), out_token);
    r.chunk_rows = double(ring_chunk_rows(s.chunk));
    for (CostPhase& p : ring_phases(r)) all.push_back(std::move(p));
    cached += b.size();
  }
  return all;
}

CostPhases scheme_parts::pass_kv_cost(const Scheme& s, const CostShape& shape, int64_t n, int ranks) {
  return ring_cost(s, shape, n, ranks, RingMove::KV);
}

Scheme parse_scheme(std::string_view text, int ranks, std::string_view flag) {
  for (const SchemeDesc* d : scheme_registry()) {
    if (d->parse) {
      if (auto s = d->parse(*d, text, ranks, flag)) return *s;
    } else if (text == d->name) {
      return scheme_parts::named(*d);
    }
  }
  bad_input("{}: unknown scheme '{}' ({})", flag, text, scheme_list());
}

std::optional<Scheme> configure_scheme(std::string_view text, int P, int K, std::string* why) {
  const SchemeDesc* d = find_scheme(text);
  if (!d) return parse_scheme(text, P, "--schemes");  // a full spelling (hybrid:2x2)
  if (d->configure) return d->configure(*d, P, K, why);
  return scheme_parts::named(*d);
}

std::unique_ptr<SequenceAttention> make_prefill_attention(const Scheme& s, AttnShape shape,
                                                          kernels::ThreadPool& pool,
                                                          comm::Communicator& comm,
                                                          AttnKernel kernel) {
  TD_CHECK(s.desc != nullptr);
  auto attn = s.desc->make(s, shape, pool, comm);
  attn->set_kernel(kernel);
  attn->set_step_chunk(s.chunk);
  return attn;
}

int64_t scheme_band(const Scheme& s, int64_t n, int ranks) {
  TD_CHECK(s.desc != nullptr);
  if (!s.desc->onto_cache || !s.desc->lockstep || s.chunk <= 0 || ranks <= 1) return n;
  return std::min(n, s.chunk * ranks);
}

std::vector<TokenRange> scheme_shard(const Scheme& s, int64_t n, int ranks, int rank) {
  return shard_ranges(n, ranks, rank, s.placement, scheme_band(s, n, ranks));
}

int64_t scheme_step_tokens(const Scheme& s, int64_t n, int ranks, int rank) {
  int64_t most = 0;
  for (const TokenRange& b : bands_of(n, scheme_band(s, n, ranks))) {
    int64_t here = 0;
    for (const TokenRange& t : shard_ranges(b.size(), ranks, rank, s.placement)) here += t.size();
    most = std::max(most, here);
  }
  return most;
}

int64_t scheme_cache_capacity(const Scheme& s, int64_t n_prompt, int64_t n_decode, int ranks,
                              int rank) {
  int64_t cap = range_tokens(scheme_shard(s, n_prompt, ranks, rank));
  // Positions n_prompt .. n_prompt + n_decode - 1 that are = rank (mod ranks).
  const int64_t first = n_prompt + ((rank - n_prompt % ranks) % ranks + ranks) % ranks;
  const int64_t end = n_prompt + n_decode;
  if (first < end) cap += (end - 1 - first) / ranks + 1;
  return cap;
}

uint64_t scheme_workspace_bytes(const Scheme& s, AttnShape shape, int64_t m_local,
                                int64_t n_total, int ranks) {
  TD_CHECK(s.desc != nullptr);
  return s.desc->workspace_bytes(s, shape, m_local, n_total, ranks);
}

}  // namespace tandem::parallel
