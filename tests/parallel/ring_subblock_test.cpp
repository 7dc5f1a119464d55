// Ring pass-KV works on each block in hand in query sub-blocks with progress() calls
// between them (ring_attention.hpp). Over in-process ranks, with blocks large enough to
// be split and head subsets of one and of several segments, every rank's output equals
// one attention call over the gathered keys, and progress() ran; the sub-block cap sets
// the number of kernel calls on a block and leaves the output unchanged.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "tandem/comm/in_process.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/parallel/ring_attention.hpp"

using namespace tandem;
using namespace tandem::parallel;

namespace {

std::vector<float> random_vec(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// N tokens' K and V rows (kvw floats each) at positions 0..N-1.
struct Keys {
  std::vector<float> K, V;
  std::vector<int32_t> pos;
};
Keys make_keys(int64_t N, int64_t kvw) {
  Keys k{random_vec(1, size_t(N * kvw)), random_vec(2, size_t(N * kvw)),
         std::vector<int32_t>(static_cast<size_t>(N))};
  for (int64_t i = 0; i < N; ++i) k.pos[size_t(i)] = int32_t(i);
  return k;
}

// This rank's contiguous shard of the N tokens through a PassKVRing on head view hv
// (sub-block cap `cap`; -1: the default), and the same queries attended over every key
// in one call (ref).
struct RankRun {
  std::vector<float> out, ref;
  RingStats stats;
};
RankRun run_rank(comm::Communicator& c, const HeadView& hv, const Keys& keys, int cap) {
  kernels::ThreadPool pool(1);
  const int P = c.size();
  const int64_t N = int64_t(keys.pos.size()), kvw = int64_t(hv.kv_heads) * hv.d;
  const int64_t b = N * c.rank() / P, n = N * (c.rank() + 1) / P - b;
  const std::vector<float> q = random_vec(100 + uint32_t(c.rank()), size_t(n * hv.q_heads * hv.d));
  PassKVRing ring(c, pool);
  if (cap >= 0) ring.set_subblocks(cap);
  ring.set_chunk_rows(0);  // whole blocks: the sub-block counts below are per block
  ring.begin_step(n);
  RankRun r{std::vector<float>(q.size(), 7.0f), std::vector<float>(q.size(), 0.0f), {}};
  const int32_t* pos = keys.pos.data();
  ring.run(hv, q.data(), pos + b, n, keys.K.data() + b * kvw, keys.V.data() + b * kvw, pos + b,
           r.out.data());
  attend_heads(hv, q.data(), pos + b, n, keys.K.data(), keys.V.data(), pos, N, r.ref.data(),
               nullptr, pool);
  r.stats = ring.stats();
  return r;
}

// P ranks, N tokens in contiguous shards; the head subset `g` of an (H, G) model.
void check(int P, int64_t N, int H, int G, int parts, int part) {
  const int d = 16;
  const HeadGroup g = split_heads(H, G, parts)[size_t(part)];
  const HeadView hv = head_view(g, H, G, d, 0.25f);
  const Keys keys = make_keys(N, int64_t(hv.kv_heads) * d);
  comm::run_in_process(P, [&](comm::Communicator& c) {
    const RankRun run = run_rank(c, hv, keys, -1);
    const std::vector<float>& out = run.out;
    const std::vector<float>& ref = run.ref;
    const int64_t n = N * (c.rank() + 1) / P - N * c.rank() / P;
    double worst = 0;
    for (size_t i = 0; i < out.size(); ++i)
      worst = std::max(worst, std::abs(double(out[i]) - ref[i]) / (std::abs(double(ref[i])) + 1e-3));
    EXPECT_LT(worst, 1e-4) << "rank " << c.rank();
    // Every rank works on its own block while the first transfer is in flight; with
    // n >= 256 that block is split (unless TANDEM_RING_SUBBLOCKS turns it off).
    if (P > 1 && n >= 256 && ring_subblocks() > 1) {
      EXPECT_GT(run.stats.progress_calls, 0u) << "rank " << c.rank();
    }
  });
}

TEST(RingSubblocks, OneSegmentAllHeads) {
  for (int P : {2, 3}) check(P, 1500, 8, 2, 1, 0);
}

TEST(RingSubblocks, SeveralSegments) {
  // Heads [8, 10) of (12, 4) in 5 parts read KV heads 2 and 3: two segments.
  const HeadGroup g = split_heads(12, 4, 5)[3];
  ASSERT_GT(head_view(g, 12, 4, 16, 0.25f).segs.size(), 1u);
  check(2, 1100, 12, 4, 5, 3);
}

// The sub-block count as the header states it: n_q queries of a block in hand go in
// sub-blocks of at least 128 queries, whole multiples of 64, at most `cap` of them (one
// call when cap is 0 or 1).
int64_t expected_calls(int64_t n_q, int64_t cap) {
  if (cap <= 1) return 1;
  int64_t rows = std::max<int64_t>(128, (n_q + cap - 1) / cap);
  rows = (rows + 63) / 64 * 64;
  return (n_q + rows - 1) / rows;
}

// Rank 0 of 2 with contiguous shards: its own block is in hand while the first transfer
// is in flight, and rank 1's block lies in its causal future (skipped), so every kernel
// call it makes is one query sub-block of its own block. The cap changes exactly that
// number and nothing in the output.
std::vector<float> rank0_run(int cap, uint64_t* calls, uint64_t* progress) {
  const int P = 2, H = 8, G = 2, d = 16;
  const HeadView hv = full_head_view(H, G, d, 0.25f);
  const Keys keys = make_keys(1500, int64_t(G) * d);
  std::vector<float> out0;
  comm::run_in_process(P, [&](comm::Communicator& c) {
    const RankRun run = run_rank(c, hv, keys, cap);
    const std::vector<float>& out = run.out;
    const std::vector<float>& ref = run.ref;
    for (size_t i = 0; i < out.size(); ++i)
      ASSERT_NEAR(out[i], ref[i], 1e-4 * (std::abs(ref[i]) + 1e-3))
          << "rank " << c.rank() << " at " << i;
    if (c.rank() != 0) return;
    EXPECT_EQ(run.stats.blocks_skipped, 1u);
    *calls = run.stats.attention_calls;
    *progress = run.stats.progress_calls;
    out0 = out;
  });
  return out0;
}

TEST(RingSubblocks, SubblockCount) {
  const int64_t n0 = 750;  // rank 0's queries
  uint64_t calls = 0, progress = 0;
  const std::vector<float> whole = rank0_run(0, &calls, &progress);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(calls, 1u);
  EXPECT_EQ(progress, 0u);
  // 1: one call; 2 and 4: the cap binds (384 and 192 rows); 16: the 128-row minimum binds.
  const std::vector<std::pair<int, uint64_t>> caps = {{1, 1}, {2, 2}, {4, 4}, {16, 6}};
  for (const auto& [cap, want] : caps) {
    ASSERT_EQ(uint64_t(expected_calls(n0, cap)), want) << "cap " << cap;
    const std::vector<float> split = rank0_run(cap, &calls, &progress);
    ASSERT_FALSE(HasFatalFailure()) << "cap " << cap;
    EXPECT_EQ(calls, want) << "cap " << cap;
    if (want > 1) {
      EXPECT_GT(progress, 0u) << "cap " << cap << ": no progress() between sub-blocks";
    }
    // Sub-block edges fall on tile edges: the same values as one call, bit for bit.
    EXPECT_EQ(split, whole) << "cap " << cap;
  }
  // Without set_subblocks the ring uses ring_subblocks() (TANDEM_RING_SUBBLOCKS, default 16).
  rank0_run(-1, &calls, &progress);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(calls, uint64_t(expected_calls(n0, ring_subblocks())));
}

}  // namespace
