#include "tandem/parallel/scheme.hpp"

#include <fmt/format.h>

#include "tandem/core/error.hpp"

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

int64_t scheme_parts::ring_block_floats(AttnShape shape, int64_t n_total, int ranks) {
  const int64_t max_shard = n_total / ranks + 2;  // largest shard, any placement
  return 2 * max_shard * (2 * shape.kv_dim() + 1);
}

int64_t scheme_parts::partial_floats(AttnShape shape, int64_t m_local) {
  return m_local * (shape.q_dim() + 2 * shape.H);
}

int64_t scheme_parts::exchange_floats(AttnShape shape, int64_t m_local, int64_t n_total, int ranks) {
  const int64_t max_shard = n_total / ranks + 2;
  return 2 * (m_local + max_shard) * (2 * shape.q_dim() + 2 * shape.kv_dim());
}

CostPhases scheme_parts::pass_kv_cost(const Scheme& s, const CostShape& shape, int64_t n, int ranks) {
  RingSpec r;
  r.R = ranks;
  for (int j = 0; j < ranks; ++j) {
    r.held.push_back(shard_ranges(n, ranks, j, s.placement));
    r.member_of.push_back(j);
  }
  r.heads.assign(size_t(ranks), double(shape.H));
  r.token_bytes.assign(size_t(ranks), 2.0 * double(shape.G * shape.d) * shape.b + kPositionBytes);
  return ring_phases(r);
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
  return attn;
}

int64_t scheme_cache_capacity(const Scheme& s, int64_t n_prompt, int64_t n_decode, int ranks,
                              int rank) {
  int64_t cap = range_tokens(shard_ranges(n_prompt, ranks, rank, s.placement));
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
