// Ring pass-KV works on each block in hand in query sub-blocks with progress() calls
// between them (ring_attention.hpp). Over in-process ranks, with blocks large enough to
// be split and head subsets of one and of several segments, every rank's output equals
// one attention call over the gathered keys, and progress() ran.
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

// P ranks, N tokens in contiguous shards; the head subset `g` of an (H, G) model.
void check(int P, int64_t N, int H, int G, int parts, int part) {
  const int d = 16;
  const HeadGroup g = split_heads(H, G, parts)[size_t(part)];
  const HeadView hv = head_view(g, H, G, d, 0.25f);
  const int64_t kvw = int64_t(hv.kv_heads) * d;
  const std::vector<float> K = random_vec(1, size_t(N * kvw)), V = random_vec(2, size_t(N * kvw));
  std::vector<int32_t> pos(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) pos[size_t(i)] = int32_t(i);
  comm::run_in_process(P, [&](comm::Communicator& c) {
    kernels::ThreadPool pool(1);
    const int64_t b = N * c.rank() / P, e = N * (c.rank() + 1) / P, n = e - b;
    const std::vector<float> q = random_vec(100 + uint32_t(c.rank()), size_t(n * hv.q_heads * d));
    PassKVRing ring(c, pool);
    ring.begin_step(n);
    std::vector<float> out(q.size(), 7.0f), ref(q.size(), 0.0f);
    ring.run(hv, q.data(), pos.data() + b, n, K.data() + b * kvw, V.data() + b * kvw,
             pos.data() + b, out.data());
    attend_heads(hv, q.data(), pos.data() + b, n, K.data(), V.data(), pos.data(), N, ref.data(),
                 nullptr, pool);
    double worst = 0;
    for (size_t i = 0; i < out.size(); ++i)
      worst = std::max(worst, std::abs(double(out[i]) - ref[i]) / (std::abs(double(ref[i])) + 1e-3));
    EXPECT_LT(worst, 1e-4) << "rank " << c.rank();
    // Every rank works on its own block while the first transfer is in flight; with
    // n >= 256 that block is split (unless TANDEM_RING_SUBBLOCKS turns it off).
    if (P > 1 && n >= 256 && ring_subblocks() > 1) {
      EXPECT_GT(ring.stats().progress_calls, 0u) << "rank " << c.rank();
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

TEST(RingSubblocks, SubblockCount) { EXPECT_GE(ring_subblocks(), 0); }

}  // namespace
