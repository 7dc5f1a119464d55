// Head split (Ulysses groups), head-subset attention, the Ulysses all-to-all layout
// transform, and the ring circulator.
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>
#include <random>

#include "tandem/comm/in_process.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/parallel/head_exchange.hpp"
#include "tandem/parallel/head_split.hpp"
#include "tandem/parallel/ring_attention.hpp"

using namespace tandem;
using namespace tandem::parallel;

namespace {

const std::vector<std::pair<int, int>> kShapes = {{4, 4}, {8, 2}, {6, 3}, {12, 4}, {8, 1}};

void expect_group(const HeadGroup& g, int h0, int nh, int g0, int ng) {
  EXPECT_EQ(g.h0, h0);
  EXPECT_EQ(g.nh, nh);
  EXPECT_EQ(g.g0, g0);
  EXPECT_EQ(g.ng, ng);
}

void expect_seg(const HeadSegment& s, int q0, int nq, int kv0, int nkv) {
  EXPECT_EQ(s.q0, q0);
  EXPECT_EQ(s.nq, nq);
  EXPECT_EQ(s.kv0, kv0);
  EXPECT_EQ(s.nkv, nkv);
}

}  // namespace

TEST(HeadSplit, UnevenGroupsStraddleKvHeads) {
  const auto g = split_heads(8, 2, 3);  // 4 query heads per KV head
  ASSERT_EQ(g.size(), 3u);
  expect_group(g[0], 0, 3, 0, 1);
  expect_group(g[1], 3, 3, 0, 2);  // heads 3 (KV 0) and 4, 5 (KV 1)
  expect_group(g[2], 6, 2, 1, 1);
}

TEST(HeadSplit, MoreRanksThanHeadsAndKvReplication) {
  const auto a = split_heads(4, 4, 5);  // P > H: the last rank gets nothing
  ASSERT_EQ(a.size(), 5u);
  for (int r = 0; r < 4; ++r) expect_group(a[size_t(r)], r, 1, r, 1);
  EXPECT_EQ(a[4].nh, 0);
  EXPECT_EQ(a[4].ng, 0);
  const auto b = split_heads(6, 3, 4);  // P > G: KV head 2 goes to ranks 2 and 3
  expect_group(b[0], 0, 2, 0, 1);
  expect_group(b[1], 2, 2, 1, 1);
  expect_group(b[2], 4, 1, 2, 1);
  expect_group(b[3], 5, 1, 2, 1);
  const auto c = split_heads(8, 1, 4);  // one KV head, replicated on every rank
  ASSERT_EQ(c.size(), 4u);  // (the loop below checks nothing on an empty split)
  for (const auto& x : c) EXPECT_EQ(x.g0 * 10 + x.ng, 1);
}

TEST(HeadSplit, InvariantsForAllShapes) {
  for (const auto& [H, G] : kShapes)
    for (int P = 1; P <= 13; ++P) {
      const auto gs = split_heads(H, G, P);
      int next = 0, lo = H, hi = 0;
      for (const auto& g : gs) {
        EXPECT_EQ(g.h0, next) << H << "/" << G << " P=" << P;
        next += g.nh;
        lo = std::min(lo, g.nh);
        hi = std::max(hi, g.nh);
        if (g.nh == 0) continue;
        // Exactly the KV heads the query heads read.
        EXPECT_EQ(g.g0, g.h0 / (H / G));
        EXPECT_EQ(g.g0 + g.ng - 1, (g.h0 + g.nh - 1) / (H / G));
      }
      EXPECT_EQ(next, H);
      EXPECT_LE(hi - lo, 1);
    }
}

TEST(HeadSplit, Segments) {
  // H=8, G=2, heads [3, 6): head 3 reads KV 0, heads 4-5 read KV 1.
  auto v = head_view(HeadGroup{3, 3, 0, 2}, 8, 2, 4, 0.5f);
  ASSERT_EQ(v.segs.size(), 2u);
  expect_seg(v.segs[0], 0, 1, 0, 1);
  expect_seg(v.segs[1], 1, 2, 1, 1);
  // H=12, G=4, heads [0, 6): whole groups, one segment with grouping 3.
  v = head_view(HeadGroup{0, 6, 0, 2}, 12, 4, 4, 0.5f);
  ASSERT_EQ(v.segs.size(), 1u);
  expect_seg(v.segs[0], 0, 6, 0, 2);
  // H=12, G=4, heads [2, 9): a partial group, then two whole ones.
  v = head_view(HeadGroup{2, 7, 0, 3}, 12, 4, 4, 0.5f);
  ASSERT_EQ(v.segs.size(), 2u);
  expect_seg(v.segs[0], 0, 1, 0, 1);
  expect_seg(v.segs[1], 1, 6, 1, 2);
  EXPECT_EQ(full_head_view(8, 2, 4, 0.5f).segs.size(), 1u);
}

// Attention on each head subset, in its segment-major layout, equals the matching
// slice of full attention.
TEST(HeadSplit, SubsetAttentionMatchesFull) {
  kernels::ThreadPool pool(1);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int d = 8;
  const int64_t n = 37;
  for (const auto& [H, G] : kShapes) {
    std::vector<float> q(size_t(n * H * d)), k(size_t(n * G * d)), v(k.size()), full(q.size());
    for (auto* b : {&q, &k, &v})
      for (auto& x : *b) x = u(rng);
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pos[size_t(i)] = int32_t((i * 5) % n);  // shuffled
    attend_heads(full_head_view(H, G, d, 0.3f), q.data(), pos.data(), n, k.data(), v.data(),
                 pos.data(), n, full.data(), nullptr, pool);
    for (int P = 1; P <= 5; ++P)
      for (const HeadGroup& g : split_heads(H, G, P)) {
        const HeadView hv = head_view(g, H, G, d, 0.3f);
        std::vector<float> sq(size_t(n * g.nh * d)), sk(size_t(n * g.ng * d)), sv(sk.size());
        std::vector<float> so(sq.size());
        for (const HeadSegment& s : hv.segs)
          for (int64_t t = 0; t < n; ++t)
            for (int64_t j = 0; j < s.nq * d; ++j)
              sq[size_t((n * s.q0 + t * s.nq) * d + j)] =
                  q[size_t(t * H * d + (g.h0 + s.q0) * d + j)];
        for (int64_t t = 0; t < n; ++t)
          for (int64_t j = 0; j < g.ng * d; ++j) {
            sk[size_t(t * g.ng * d + j)] = k[size_t(t * G * d + g.g0 * d + j)];
            sv[size_t(t * g.ng * d + j)] = v[size_t(t * G * d + g.g0 * d + j)];
          }
        attend_heads(hv, sq.data(), pos.data(), n, sk.data(), sv.data(), pos.data(), n, so.data(),
                     nullptr, pool);
        for (const HeadSegment& s : hv.segs)
          for (int64_t t = 0; t < n; ++t)
            for (int64_t j = 0; j < s.nq * d; ++j)
              ASSERT_NEAR(so[size_t((n * s.q0 + t * s.nq) * d + j)],
                          full[size_t(t * H * d + (g.h0 + s.q0) * d + j)], 1e-5)
                  << H << "/" << G << " P=" << P << " h0=" << g.h0;
      }
  }
}

// Sequence-sharded -> head-sharded -> back is the identity, and the head-sharded
// layout holds every token of the group, in member order.
TEST(HeadExchange, RoundTrip) {
  const int d = 2;
  for (const auto& [H, G] : kShapes)
    for (int P = 1; P <= 5; ++P) {
      AttnShape shape{H, G, d, 1.0f};
      // Member r holds counts[r] tokens (some none); value of (token t, head h, j).
      std::vector<int64_t> counts(static_cast<size_t>(P));
      for (int r = 0; r < P; ++r) counts[size_t(r)] = (r * 3 + P) % 4;
      std::vector<int64_t> first(static_cast<size_t>(P), 0);
      for (int r = 1; r < P; ++r) first[size_t(r)] = first[size_t(r - 1)] + counts[size_t(r - 1)];
      const auto val = [](int64_t t, int h, int j, int which) {
        return float(which * 100000 + t * 100 + h * d + j);
      };
      comm::run_in_process(P, [&](comm::Communicator& comm) {
        const int r = comm.rank();
        const int64_t m = counts[size_t(r)], f = first[size_t(r)];
        std::vector<float> q(size_t(m * H * d)), k(size_t(m * G * d)), v(k.size());
        std::vector<int32_t> pos(static_cast<size_t>(m));
        for (int64_t t = 0; t < m; ++t) {
          pos[size_t(t)] = int32_t(1000 + f + t);
          for (int h = 0; h < H; ++h)
            for (int j = 0; j < d; ++j) q[size_t((t * H + h) * d + j)] = val(f + t, h, j, 0);
          for (int h = 0; h < G; ++h)
            for (int j = 0; j < d; ++j) {
              k[size_t((t * G + h) * d + j)] = val(f + t, h, j, 1);
              v[size_t((t * G + h) * d + j)] = val(f + t, h, j, 2);
            }
        }
        HeadExchange x(shape, comm);
        for (int rep = 0; rep < 2; ++rep) {  // buffers are reused across steps
          x.begin_step(m, pos.data());
          const int64_t n = x.tokens();
          ASSERT_EQ(n, first.back() + counts.back());
          for (int64_t t = 0; t < n; ++t) ASSERT_EQ(x.positions()[t], 1000 + t);
          x.to_heads(q.data(), k.data(), v.data());
          const HeadGroup& g = x.group();
          const HeadView& hv = x.view();
          for (const HeadSegment& s : hv.segs)
            for (int64_t t = 0; t < n; ++t)
              for (int h = 0; h < s.nq; ++h)
                for (int j = 0; j < d; ++j)
                  ASSERT_EQ(x.q()[(n * s.q0 + t * s.nq + h) * d + j],
                            val(t, g.h0 + s.q0 + h, j, 0));
          for (int64_t t = 0; t < n; ++t)
            for (int h = 0; h < g.ng; ++h)
              for (int j = 0; j < d; ++j) {
                ASSERT_EQ(x.k()[(t * g.ng + h) * d + j], val(t, g.g0 + h, j, 1));
                ASSERT_EQ(x.v()[(t * g.ng + h) * d + j], val(t, g.g0 + h, j, 2));
              }
          std::copy(x.q(), x.q() + n * g.nh * d, x.out());
          std::vector<float> back(q.size(), -1.0f);
          x.to_tokens(back.data());
          ASSERT_EQ(back, q) << H << "/" << G << " P=" << P << " rank " << r;
        }
      });
    }
}

// Every member's non-empty block visits every member, own first, then rank-1, rank-2, ...
TEST(RingCirculator, VisitsEveryBlock) {
  for (int P = 1; P <= 4; ++P)
    comm::run_in_process(P, [&](comm::Communicator& comm) {
      const int r = comm.rank();
      RingCirculator c(comm, 5);
      auto rows_of = [](int owner) { return int64_t(owner % 2 == 0 ? owner + 1 : 0); };  // odd: empty
      c.set_rows(rows_of(r));
      float* b = c.local_block(3);
      for (int64_t i = 0; i < rows_of(r) * 3; ++i) b[i] = float(r * 100 + i);
      std::vector<int> want, seen;
      for (int s = 0; s < P; ++s)
        if (rows_of((r - s + P) % P) > 0) want.push_back((r - s + P) % P);
      auto fn = [&](int owner, const float* blk, int64_t n) {
        seen.push_back(owner);
        EXPECT_EQ(n, rows_of(owner));
        for (int64_t i = 0; i < n * 3; ++i) EXPECT_EQ(blk[i], float(owner * 100 + i));
      };
      c.run(fn);
      EXPECT_EQ(seen, want) << "P=" << P << " rank " << r;
    });
}

// The conveyor: blocks of many chunks (uneven, some empty), every chunk of every block
// reaches every member exactly once, its rows intact, in block order per owner; the
// chunks in hand never need more than three chunk buffers.
TEST(RingCirculator, ConveyorDeliversEveryChunkOnce) {
  for (int P = 1; P <= 4; ++P)
    for (const int64_t chunk : {1, 2, 5, 64}) {
      comm::run_in_process(P, [&](comm::Communicator& comm) {
        const int r = comm.rank();
        RingCirculator c(comm, 6);
        auto rows_of = [](int owner) { return int64_t(owner == 1 ? 0 : 3 * owner + 4); };
        c.set_rows(rows_of(r));
        auto fill = [&](int64_t first, int64_t n, float* dst) {
          EXPECT_LE(n, chunk);
          for (int64_t i = 0; i < n * 2; ++i) dst[i] = float(r * 1000 + first * 2 + i);
        };
        std::vector<int64_t> got(static_cast<size_t>(P), 0);  // rows seen per owner
        auto fn = [&](int owner, const float* blk, int64_t n) {
          EXPECT_LE(n, chunk);
          const int64_t first = got[size_t(owner)];
          for (int64_t i = 0; i < n * 2; ++i)
            ASSERT_EQ(blk[i], float(owner * 1000 + first * 2 + i)) << "owner " << owner;
          got[size_t(owner)] += n;
        };
        c.run_chunked(chunk, 2, fill, fn);
        for (int o = 0; o < P; ++o)
          EXPECT_EQ(got[size_t(o)], rows_of(o)) << "P=" << P << " chunk " << chunk << " owner " << o;
      });
    }
}
