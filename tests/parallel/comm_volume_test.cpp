// Where data lives and how much moves: for every scheme at P = 2, 3, 4 and several N, each
// rank's bytes sent and received per layer of a prefill (counted by the communicator)
// equal what the scheme must move, written here from first principles and equal to the
// registry's cost formula; each rank's cache holds its own shard only; and the heap a
// rank's strategy holds while it attends (counted by operator new, per rank thread)
// stays within the descriptor's workspace estimate: its K/V in flight, not the whole
// sequence's. Sharded decode moves one partial per rank per layer.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <new>
#include <random>

#include "support/schemes.hpp"
#include "tandem/comm/in_process.hpp"
#include "tandem/parallel/auto_attention.hpp"
#include "tandem/parallel/head_split.hpp"
#include "tandem/parallel/scheme.hpp"
#include "tandem/parallel/sharded_decode.hpp"

// ---- Heap counting per thread ----
// Every operator new of this program carries a header naming the counted thread that
// allocated it (or none); the bytes are charged to that thread until freed, by any thread.
namespace {
constexpr int kSlots = 8;
std::atomic<int64_t> g_live[kSlots];
std::atomic<int64_t> g_peak[kSlots];
thread_local int t_slot = -1;
struct alignas(16) Header {
  size_t size;
  int slot;
};

void* counted_alloc(size_t n) {
  void* p = std::malloc(sizeof(Header) + n);
  if (!p) throw std::bad_alloc();
  auto* h = static_cast<Header*>(p);
  h->size = n;
  h->slot = t_slot;
  if (t_slot >= 0) {
    const int64_t now = g_live[t_slot].fetch_add(int64_t(n)) + int64_t(n);
    int64_t peak = g_peak[t_slot].load();
    while (now > peak && !g_peak[t_slot].compare_exchange_weak(peak, now)) {
    }
  }
  return h + 1;
}

void counted_free(void* p) {
  if (!p) return;
  auto* h = static_cast<Header*>(p) - 1;
  if (h->slot >= 0) g_live[h->slot].fetch_sub(int64_t(h->size));
  std::free(h);
}

// Counts this thread's allocations in `slot` from now on; the peak restarts at the
// current live bytes.
void count_thread(int slot) {
  t_slot = slot;
  g_peak[slot].store(g_live[slot].load());
}
int64_t live_bytes(int slot) { return g_live[slot].load(); }
int64_t peak_bytes(int slot) { return g_peak[slot].load(); }
}  // namespace

void* operator new(size_t n) { return counted_alloc(n); }
void* operator new[](size_t n) { return counted_alloc(n); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, size_t) noexcept { counted_free(p); }
void operator delete[](void* p, size_t) noexcept { counted_free(p); }

using namespace tandem;
using namespace tandem::parallel;

namespace {

constexpr int kLayers = 2;

// One rank's traffic and memory in a prefill of N tokens.
struct RankCount {
  int64_t tokens = 0;
  std::vector<double> sent, received;  // per layer
  double step_sent = 0;                // begin_step (metadata: block sizes, positions)
  int64_t cache_tokens = 0, cache_capacity = 0;
  double held = 0;       // peak heap the strategy held beyond what it held before
  double workspace = 0;  // the descriptor's estimate
  std::string chosen;    // auto: the strategy it picked
};

// Deterministic q/k/v for a token at global position p (the same on any rank).
void fill_rows(float* dst, int64_t width, const std::vector<int32_t>& pos, uint32_t salt) {
  for (size_t i = 0; i < pos.size(); ++i) {
    std::mt19937 rng(uint32_t(pos[i]) * 7919u + salt);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int64_t c = 0; c < width; ++c) dst[int64_t(i) * width + c] = u(rng);
  }
}

// The bands of the scheme's prefill (one band when it does not chunk).
std::vector<TokenRange> bands(const Scheme& s, int64_t n, int P) {
  return bands_of(n, scheme_band(s, n, P));
}

std::vector<RankCount> count_prefill(const Scheme& s, AttnShape shape, int64_t n, int P) {
  std::vector<RankCount> out(static_cast<size_t>(P));
  comm::run_in_process(P, [&](comm::Communicator& comm) {
    const int r = comm.rank();
    RankCount& c = out[size_t(r)];
    kernels::ThreadPool pool(1);
    std::vector<int32_t> pos;
    for (int64_t i : shard_indices(n, P, r, s.placement, scheme_band(s, n, P)))
      pos.push_back(int32_t(i));
    c.tokens = int64_t(pos.size());
    const int64_t step = scheme_step_tokens(s, n, P, r);
    std::vector<float> q(size_t(step * shape.q_dim())), k(size_t(step * shape.kv_dim())),
        v(size_t(step * shape.kv_dim())), o(size_t(step * shape.q_dim()));
    c.workspace = double(scheme_workspace_bytes(s, shape, step, n, P));
    // Twice: the first run warms the attention kernels' per-thread scratch (sized by
    // their tiles, the same under any scheme); the second is counted.
    for (int run = 0; run < 2; ++run) {
      const bool counted = run == 1;
      KVCache cache(kLayers, scheme_cache_capacity(s, n, 0, P, r), shape.kv_dim());
      if (counted) {
        count_thread(r);
        c.sent.assign(kLayers, 0.0);
        c.received.assign(kLayers, 0.0);
        c.chosen.clear();
      }
      const int64_t before = live_bytes(r);
      auto attn = make_prefill_attention(s, shape, pool, comm);
      // Band after band: this rank's tokens of each band, one step each.
      size_t i0 = 0;
      for (const TokenRange& b : bands(s, n, P)) {
        size_t i1 = i0;
        while (i1 < pos.size() && pos[i1] < b.end) ++i1;
        const std::vector<int32_t> bpos(pos.begin() + ptrdiff_t(i0), pos.begin() + ptrdiff_t(i1));
        const int64_t m = int64_t(bpos.size());
        i0 = i1;
        comm.reset_stats();
        const int64_t slot = attn->begin_step(cache, m, bpos.data());
        if (counted) c.step_sent = std::max(c.step_sent, double(comm.stats().bytes_sent));
        for (int layer = 0; layer < kLayers; ++layer) {
          fill_rows(q.data(), shape.q_dim(), bpos, 1u + 3u * uint32_t(layer));
          fill_rows(k.data(), shape.kv_dim(), bpos, 2u + 3u * uint32_t(layer));
          fill_rows(v.data(), shape.kv_dim(), bpos, 3u + 3u * uint32_t(layer));
          comm.reset_stats();
          attn->attend(cache, slot,
                       AttnStep{layer, m, q.data(), k.data(), v.data(), bpos.data(), o.data()});
          if (!counted) continue;
          c.sent[size_t(layer)] += double(comm.stats().bytes_sent);
          c.received[size_t(layer)] += double(comm.stats().bytes_received);
        }
        if (!counted) continue;
        if (const auto* a = dynamic_cast<const AutoAttention*>(attn.get()))
          c.chosen += std::string(c.chosen.empty() ? "" : ",") + std::string(a->chosen().name());
      }
      if (!counted) continue;
      c.held = double(peak_bytes(r) - before);
      c.cache_tokens = cache.size();
      c.cache_capacity = cache.capacity();
      t_slot = -1;
    }
  });
  return out;
}

// ---- What each scheme must move per layer, from first principles ----
constexpr double kF = 4;  // bytes per float, and per int32 position

struct Expect {
  std::vector<double> sent, received;
};

// A ring of R members, member g holding T[g] tokens, forwarding every block but the one
// its successor started with: member g sends the blocks of all members but g+1 and
// receives all but its own, at `per_token` bytes a token.
void ring_of_blocks(const std::vector<int64_t>& T, const std::vector<int>& member,
                    const std::vector<double>& per_token, Expect& e) {
  const int R = int(T.size());
  int64_t total = 0;
  for (int64_t t : T) total += t;
  for (size_t r = 0; r < member.size(); ++r) {
    const int g = member[r];
    e.sent[r] += per_token[r] * double(total - T[size_t((g + 1) % R)]);
    e.received[r] += per_token[r] * double(total - T[size_t(g)]);
  }
}

// One band of a prefill: every rank's tokens of the band (m) and its cache after it (T).
void expected_band(const Scheme& s, AttnShape sh, const std::vector<int64_t>& m,
                   const std::vector<int64_t>& T, bool pass_q, Expect& e) {
  const int P = int(m.size());
  int64_t band = 0;
  for (int64_t x : m) band += x;
  std::vector<int> self(static_cast<size_t>(P));
  for (int r = 0; r < P; ++r) self[size_t(r)] = r;
  const std::string kind(s.kind());
  if (kind == "ring" || kind == "zigzag" || (kind == "auto" && !pass_q)) {
    // K and V of every cached token of the other ranks, with its position.
    ring_of_blocks(T, self, std::vector<double>(size_t(P), 2 * sh.kv_dim() * kF + kF), e);
  } else if (pass_q) {
    // The band's queries (with positions) visit every rank; each visited rank sends a
    // partial output and log-sum-exp of them back to their owner.
    ring_of_blocks(m, self, std::vector<double>(size_t(P), sh.q_dim() * kF + kF), e);
    const double partial = (sh.q_dim() + sh.H) * kF;
    for (int r = 0; r < P; ++r) {
      e.sent[size_t(r)] += partial * double(band - m[size_t(r)]);
      e.received[size_t(r)] += partial * double(m[size_t(r)] * (P - 1));
    }
  } else {
    // Ulysses (U = P) or hybrid U x R: inside each group of U consecutive ranks, an
    // all-to-all to the member's heads (Q, K, V of its tokens for every other member's
    // heads) and back (its heads' outputs for every other member's tokens); hybrid then
    // rings each member's K/V heads of its group's tokens across the R groups.
    const int U = kind == "ulysses" ? P : s.ulysses;
    const auto heads = split_heads(sh.H, sh.G, U);
    std::vector<double> ring_token(static_cast<size_t>(P));
    std::vector<int> group(static_cast<size_t>(P));
    std::vector<int64_t> G(static_cast<size_t>(P / U), 0);
    for (int r = 0; r < P; ++r) {
      const int first = r / U * U, me = r % U;
      const HeadGroup& mine = heads[size_t(me)];
      group[size_t(r)] = r / U;
      G[size_t(r / U)] += m[size_t(r)];
      ring_token[size_t(r)] = 2.0 * mine.ng * sh.d * kF + kF;
      for (int j = 0; j < U; ++j) {
        if (j == me) continue;
        const HeadGroup& g = heads[size_t(j)];
        const int64_t mj = m[size_t(first + j)], mr = m[size_t(r)];
        e.sent[size_t(r)] += kF * sh.d * (double(mr) * (g.nh + 2 * g.ng) + double(mj) * mine.nh);
        e.received[size_t(r)] +=
            kF * sh.d * (double(mj) * (mine.nh + 2 * mine.ng) + double(mr) * g.nh);
      }
    }
    if (P / U > 1) ring_of_blocks(G, group, ring_token, e);
  }
}

// Every band in turn (one without chunking). chosen: auto's pick per band.
Expect expected(const Scheme& s, AttnShape sh, int64_t n, int P, const std::string& chosen) {
  Expect e{std::vector<double>(size_t(P)), std::vector<double>(size_t(P))};
  const std::vector<TokenRange> bs = bands(s, n, P);
  std::vector<int64_t> T(static_cast<size_t>(P), 0);
  size_t at = 0;  // into chosen, a comma-separated list
  for (const TokenRange& b : bs) {
    std::vector<int64_t> m = shard_sizes(b.size(), P, s.placement);
    for (int r = 0; r < P; ++r) T[size_t(r)] += m[size_t(r)];
    std::string pick;
    if (at < chosen.size()) {
      const size_t end = std::min(chosen.find(',', at), chosen.size());
      pick = chosen.substr(at, end - at);
      at = end + 1;
    }
    expected_band(s, sh, m, T, s.is("pass-q") || pick == "pass-q", e);
  }
  return e;
}

// Per rank, the bytes the registry's cost formula says it sends per layer.
std::vector<double> formula_sent(const Scheme& s, AttnShape sh, int64_t n, int P) {
  const CostShape cs{sh.H, sh.G, sh.d, kF};
  std::vector<double> sent(size_t(P), 0.0);
  for (const CostPhase& ph : s.desc->cost(s, cs, n, P))
    for (int r = 0; r < P; ++r) sent[size_t(r)] += ph.bytes[size_t(r)];
  return sent;
}


struct ShapeCase {
  int H, G, d;
};
const ShapeCase kShapes[] = {{4, 4, 16}, {6, 2, 8}};

}  // namespace

TEST(CommVolume, EverySchemeMovesWhatItMustAndHoldsItsShard) {
  for (const ShapeCase sc : kShapes) {
    const AttnShape shape{sc.H, sc.G, sc.d, 1.0f / std::sqrt(float(sc.d))};
    for (const auto& [plain, P] : test::schemes_at({2, 3, 4}))
     for (const int64_t chunk : {0, 16}) {  // the whole shard in one step; bands of 16 x P
      Scheme scheme = plain;
      scheme.chunk = chunk;
      const Scheme* s = &scheme;
      for (int64_t n : {int64_t(5), int64_t(96), int64_t(301)}) {
        SCOPED_TRACE(s->name + " P=" + std::to_string(P) + " N=" + std::to_string(n) +
                     " H=" + std::to_string(sc.H) + " G=" + std::to_string(sc.G) +
                     " chunk=" + std::to_string(chunk));
        const auto counts = count_prefill(*s, shape, n, P);
        const Expect e = expected(*s, shape, n, P, counts[0].chosen);
        const auto formula = formula_sent(*s, shape, n, P);
        double total_sent = 0, total_received = 0;
        for (int r = 0; r < P; ++r) {
          const RankCount& c = counts[size_t(r)];
          EXPECT_EQ(c.chosen, counts[0].chosen) << "rank " << r;
          if (s->is("auto") && scheme_band(*s, n, P) < n)  // later bands move queries
            EXPECT_NE(c.chosen.find("pass-q"), std::string::npos) << c.chosen;
          for (int layer = 0; layer < kLayers; ++layer) {
            EXPECT_EQ(c.sent[size_t(layer)], e.sent[size_t(r)]) << "rank " << r << " layer " << layer;
            EXPECT_EQ(c.received[size_t(layer)], e.received[size_t(r)])
                << "rank " << r << " layer " << layer;
            total_sent += c.sent[size_t(layer)];
            total_received += c.received[size_t(layer)];
          }
          EXPECT_EQ(formula[size_t(r)], e.sent[size_t(r)]) << "rank " << r << ": cost formula";
          // Once per step, block sizes and positions only: a few bytes per token.
          EXPECT_LE(c.step_sent, 64.0 * P + 4.0 * double(n) * P) << "rank " << r;
          // The cache holds this rank's shard, nothing more.
          EXPECT_EQ(c.cache_tokens, c.tokens) << "rank " << r;
          EXPECT_EQ(c.cache_capacity, c.tokens) << "rank " << r;
          // What the strategy allocated while attending: its workspace, not the
          // sequence (a small allowance for bookkeeping: block sizes, positions,
          // request handles).
          EXPECT_LE(c.held, c.workspace + 2048.0 + 8.0 * double(n)) << "rank " << r;
        }
        EXPECT_EQ(total_sent, total_received);
      }
    }
  }
}

// Decoding against the sharded cache: each new token is stored on one rank, and each
// rank sends its partial (output and log-sum-exp of the new tokens) to every other rank.
TEST(CommVolume, ShardedDecodeMovesOnePartialPerRank) {
  const AttnShape shape{6, 2, 8, 0.35f};
  const Scheme ring = parse_scheme("ring", 0);
  for (int P : {2, 3, 4}) {
    const int64_t n = 50, steps = 7;
    comm::run_in_process(P, [&](comm::Communicator& comm) {
      const int r = comm.rank();
      kernels::ThreadPool pool(1);
      KVCache cache(kLayers, scheme_cache_capacity(ring, n, steps, P, r), shape.kv_dim());
      std::vector<int32_t> pos;
      for (int64_t i : shard_indices(n, P, r, ring.placement)) pos.push_back(int32_t(i));
      std::vector<float> q(pos.size() * size_t(shape.q_dim())), k(pos.size() * size_t(shape.kv_dim())),
          o(q.size());
      fill_rows(q.data(), shape.q_dim(), pos, 1);
      fill_rows(k.data(), shape.kv_dim(), pos, 2);
      auto attn = make_prefill_attention(ring, shape, pool, comm);
      const int64_t m = int64_t(pos.size());
      const int64_t slot = attn->begin_step(cache, m, pos.data());
      for (int layer = 0; layer < kLayers; ++layer)
        attn->attend(cache, slot, AttnStep{layer, m, q.data(), k.data(), k.data(), pos.data(), o.data()});
      ShardedDecode decode(shape, pool, comm);
      for (int64_t t = 0; t < steps; ++t) {
        const int32_t p = int32_t(n + t);
        std::vector<int32_t> one{p};
        std::vector<float> q1(size_t(shape.q_dim())), k1(size_t(shape.kv_dim())), o1(q1.size());
        fill_rows(q1.data(), shape.q_dim(), one, 5);
        fill_rows(k1.data(), shape.kv_dim(), one, 6);
        const int64_t s1 = decode.begin_step(cache, 1, one.data());
        for (int layer = 0; layer < kLayers; ++layer) {
          comm.reset_stats();
          decode.attend(cache, s1, AttnStep{layer, 1, q1.data(), k1.data(), k1.data(), one.data(), o1.data()});
          const double partial = (shape.q_dim() + shape.H) * kF;
          EXPECT_EQ(double(comm.stats().bytes_sent), partial * (P - 1)) << "P=" << P << " rank " << r;
          EXPECT_EQ(double(comm.stats().bytes_received), partial * (P - 1)) << "P=" << P << " rank " << r;
        }
      }
      // Position p went to rank p mod P only.
      int64_t own = 0;
      for (int64_t t = 0; t < steps; ++t) own += (n + t) % P == r;
      EXPECT_EQ(cache.size(), m + own) << "P=" << P << " rank " << r;
    });
  }
}
