#include "tandem/parallel/scheme_cost.hpp"

#include <algorithm>

#include "tandem/core/error.hpp"
#include "tandem/parallel/head_split.hpp"

namespace tandem::parallel {

double range_pairs(const TokenRange& q, const TokenRange& k) {
  // Query i sees clamp(i - k.begin + 1, 0, |k|) keys: none below k, a growing run inside
  // k, all of k above it.
  if (q.size() <= 0 || k.size() <= 0) return 0;
  const double c = double(k.begin);
  double sum = 0;
  const int64_t lo = std::max(q.begin, k.begin), hi = std::min(q.end, k.end);
  if (hi > lo) {
    const double top = double(hi) - c, bottom = double(lo) - c;
    sum += top * (top + 1) / 2 - bottom * (bottom + 1) / 2;
  }
  const int64_t above = q.end - std::max(q.begin, k.end);
  if (above > 0) sum += double(above) * double(k.size());
  return sum;
}

double range_pairs(const std::vector<TokenRange>& q, const std::vector<TokenRange>& k) {
  double sum = 0;
  for (const TokenRange& a : q)
    for (const TokenRange& b : k) sum += range_pairs(a, b);
  return sum;
}

int64_t range_tokens(const std::vector<TokenRange>& r) {
  int64_t n = 0;
  for (const TokenRange& t : r) n += t.size();
  return n;
}

std::vector<TokenRange> group_ranges(int64_t n, int ranks, Placement placement, int first,
                                     int members) {
  std::vector<TokenRange> all;
  for (int r = first; r < first + members; ++r)
    for (const TokenRange& t : shard_ranges(n, ranks, r, placement)) all.push_back(t);
  return all;
}

CostPhases ring_phases(const RingSpec& spec) {
  const size_t ranks = spec.member_of.size();
  TD_CHECK(spec.R >= 1 && int(spec.held.size()) == spec.R && spec.heads.size() == ranks &&
           spec.token_bytes.size() == ranks && (!spec.pass_q || spec.out_bytes.size() == ranks));
  TD_CHECK(spec.queries.empty() || int(spec.queries.size()) == spec.R);
  const int R = spec.R;
  auto owner_at = [&](size_t r, int s) { return (spec.member_of[r] - s + R) % R; };
  auto queries = [&](int member) -> const std::vector<TokenRange>& {
    return spec.queries.empty() ? spec.held[size_t(member)] : spec.queries[size_t(member)];
  };
  CostPhases phases;
  for (int s = 0; s < R; ++s) {
    CostPhase p;
    p.kind = R > 1 ? CostPhase::Kind::RingStep : CostPhase::Kind::Compute;
    p.group = R;
    p.stride = spec.stride;
    p.head_pairs.assign(ranks, 0.0);
    p.bytes.assign(ranks, 0.0);
    p.query_tokens.assign(ranks, 0.0);
    p.query_heads = spec.heads;
    // Pass-KV attends chunk by chunk as they arrive; pass-Q attends a visiting block
    // against the whole of its cache.
    if (R > 1 && !spec.pass_q) p.call_keys = spec.chunk_rows;
    for (size_t r = 0; r < ranks; ++r) {
      const int me = spec.member_of[r], owner = owner_at(r, s);
      const auto& mine = spec.held[size_t(me)];
      const auto& theirs = spec.held[size_t(owner)];
      // Pass-KV: my queries against their keys, their keys travel. Pass-Q: their queries
      // against my keys, their queries travel.
      const auto& moving = spec.pass_q ? queries(owner) : theirs;
      p.head_pairs[r] = spec.heads[r] * (spec.pass_q ? range_pairs(queries(owner), mine)
                                                     : range_pairs(queries(me), theirs));
      p.query_tokens[r] = double(range_tokens(spec.pass_q ? queries(owner) : queries(me)));
      if (s + 1 < R) p.bytes[r] = double(range_tokens(moving)) * spec.token_bytes[r];
      // Pass-Q: the partial of the previous step's visiting block goes back meanwhile.
      if (spec.pass_q && s >= 2)
        p.bytes[r] += double(range_tokens(queries(owner_at(r, s - 1)))) * spec.out_bytes[r];
    }
    phases.push_back(std::move(p));
  }
  if (spec.pass_q && R > 1) {  // the last partial, after the last step
    CostPhase p;
    p.kind = CostPhase::Kind::Exchange;
    p.group = R;
    p.stride = spec.stride;
    p.head_pairs.assign(ranks, 0.0);
    p.bytes.assign(ranks, 0.0);
    for (size_t r = 0; r < ranks; ++r)
      p.bytes[r] = double(range_tokens(queries(owner_at(r, R - 1)))) * spec.out_bytes[r];
    phases.push_back(std::move(p));
  }
  return phases;
}

HeadExchangeCost head_exchange_cost(const CostShape& shape, int64_t n, int ranks,
                                    Placement placement, int U) {
  TD_CHECK(U >= 1 && ranks % U == 0);
  const auto heads = split_heads(int(shape.H), int(shape.G), U);
  const std::vector<int64_t> m = shard_sizes(n, ranks, placement);
  HeadExchangeCost x;
  for (CostPhase* p : {&x.to_heads, &x.to_tokens}) {
    p->kind = CostPhase::Kind::Exchange;
    p->group = U;
    p->head_pairs.assign(size_t(ranks), 0.0);
    p->bytes.assign(size_t(ranks), 0.0);
  }
  const double e = shape.b * double(shape.d);
  for (int r = 0; r < ranks; ++r) {
    const int first = r / U * U, me = r % U;
    const HeadGroup& mine = heads[size_t(me)];
    x.q_heads.push_back(mine.nh);
    x.kv_heads.push_back(mine.ng);
    for (int j = 0; j < U; ++j) {
      if (j == me) continue;
      const HeadGroup& g = heads[size_t(j)];
      x.to_heads.bytes[size_t(r)] += double(m[size_t(r)]) * double(g.nh + 2 * g.ng) * e;
      x.to_tokens.bytes[size_t(r)] += double(m[size_t(first + j)]) * double(mine.nh) * e;
    }
  }
  return x;
}

}  // namespace tandem::parallel
