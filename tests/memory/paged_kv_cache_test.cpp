// Paged KV cache: same contents as the contiguous cache, prefix sharing with
// copy-on-write, block accounting, exhaustion errors and Q8_0 storage.
#include "tandem/memory/paged_kv_cache.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/memory/kv_cache.hpp"

using namespace tandem;

namespace {

std::vector<float> random_row(std::mt19937& rng, int64_t n) {
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> r(static_cast<size_t>(n));
  for (float& x : r) x = u(rng);
  return r;
}

// Writes K/V rows of tokens [t0, t0+m) of s in every layer with a value that names
// (tag, layer, K|V, token, element), and checks them.
float tag_value(int tag, int64_t layer, int kv, int64_t t, int64_t e) {
  return float(tag * 100000 + layer * 10000 + kv * 5000 + t * 10) + float(e) * 0.001f;
}
void fill(PagedKVCache& c, PagedKVCache::SeqId s, int64_t t0, int64_t m, int tag) {
  std::vector<float> row(size_t(c.kv_dim()));
  for (int64_t l = 0; l < c.n_layer(); ++l)
    for (int64_t t = t0; t < t0 + m; ++t)
      for (int kv = 0; kv < 2; ++kv) {
        for (int64_t e = 0; e < c.kv_dim(); ++e) row[size_t(e)] = tag_value(tag, l, kv, t, e);
        kv == 0 ? c.write_k(l, s, t, row.data()) : c.write_v(l, s, t, row.data());
      }
}
void expect_rows(const PagedKVCache& c, PagedKVCache::SeqId s, int64_t t0, int64_t m, int tag) {
  for (int64_t l = 0; l < c.n_layer(); ++l)
    for (int64_t t = t0; t < t0 + m; ++t)
      for (int64_t e = 0; e < c.kv_dim(); ++e) {
        ASSERT_EQ(c.k(l, s, t)[e], tag_value(tag, l, 0, t, e)) << "layer " << l << " token " << t;
        ASSERT_EQ(c.v(l, s, t)[e], tag_value(tag, l, 1, t, e)) << "layer " << l << " token " << t;
      }
}

PagedKVConfig config(int64_t n_blocks, int64_t block_size = 16, int64_t kv_dim = 8,
                     DType storage = DType::F32) {
  PagedKVConfig cfg;
  cfg.n_layer = 2;
  cfg.kv_dim = kv_dim;
  cfg.block_size = block_size;
  cfg.n_blocks = n_blocks;
  cfg.storage = storage;
  return cfg;
}

}  // namespace

TEST(PagedKVCache, MatchesContiguousCacheForRandomAppends) {
  for (int64_t bs : {1, 4, 16, 32}) {
    std::mt19937 rng(static_cast<uint32_t>(bs));
    const int64_t n_layer = 3, kv_dim = 12, capacity = 300;
    KVCache ref(n_layer, capacity, kv_dim);
    PagedKVConfig cfg{n_layer, kv_dim, bs, (capacity + bs - 1) / bs, DType::F32};
    PagedKVCache paged(cfg);
    const auto s = paged.create_sequence();
    std::uniform_int_distribution<int64_t> chunk(1, 37);
    int32_t next_pos = 5;
    while (ref.size() < capacity) {
      const int64_t m = std::min(chunk(rng), capacity - ref.size());
      std::vector<int32_t> pos(static_cast<size_t>(m));
      for (int32_t& p : pos) p = next_pos++;
      const int64_t a = ref.append(m, pos.data());
      const int64_t b = paged.append(s, m, pos.data());
      ASSERT_EQ(a, b);
      for (int64_t l = 0; l < n_layer; ++l)
        for (int64_t t = a; t < a + m; ++t) {
          auto kr = random_row(rng, kv_dim), vr = random_row(rng, kv_dim);
          ref.write(l, t, 1, kr.data(), vr.data());
          // Both write paths: the raw pointer and write_v.
          std::copy(kr.begin(), kr.end(), paged.k(l, s, t));
          paged.write_v(l, s, t, vr.data());
        }
    }
    ASSERT_EQ(paged.size(s), ref.size());
    // Row by row.
    for (int64_t l = 0; l < n_layer; ++l)
      for (int64_t t = 0; t < ref.size(); ++t) {
        ASSERT_EQ(paged.position(s, t), ref.positions()[t]);
        for (int64_t e = 0; e < kv_dim; ++e) {
          ASSERT_EQ(paged.k(l, s, t)[e], ref.k(l, t)[e]);
          ASSERT_EQ(paged.v(l, s, t)[e], ref.v(l, t)[e]);
        }
      }
    // Block by block, the way an attention kernel walks it.
    std::vector<float> kbuf(size_t(bs * kv_dim)), vbuf(size_t(bs * kv_dim));
    for (int64_t l = 0; l < n_layer; ++l) {
      int64_t t = 0;
      for (const BlockRef& b : paged.blocks(s)) {
        const float* kr = paged.k_rows(l, b.id);
        paged.read_v_block(l, b, vbuf.data());
        for (int32_t r = 0; r < b.n; ++r, ++t) {
          ASSERT_EQ(b.pos[r], ref.positions()[t]);
          for (int64_t e = 0; e < kv_dim; ++e) {
            ASSERT_EQ(kr[r * kv_dim + e], ref.k(l, t)[e]);
            ASSERT_EQ(vbuf[size_t(r * kv_dim + e)], ref.v(l, t)[e]);
          }
        }
      }
      ASSERT_EQ(t, ref.size());
    }
  }
}

TEST(PagedKVCache, ForkSharesBlocksUntilAWrite) {
  PagedKVCache c(config(8));
  const auto a = c.create_sequence();
  c.append(a, 20);  // blocks: 16 full + 4 partial
  fill(c, a, 0, 20, 1);
  ASSERT_EQ(c.stats().blocks_used, 2);

  const auto b = c.fork(a, 20);
  PagedKVStats st = c.stats();
  EXPECT_EQ(st.blocks_used, 2);  // nothing copied
  EXPECT_EQ(st.blocks_shared, 2);
  EXPECT_EQ(st.tokens, 40);
  ASSERT_EQ(c.blocks(b).size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(c.blocks(b)[i].id, c.blocks(a)[i].id);
    EXPECT_EQ(c.refcount(c.blocks(a)[i].id), 2);
  }
  expect_rows(c, b, 0, 20, 1);

  // b writes into the shared partial block: it gets its own copy first.
  const int32_t shared_tail = c.blocks(a)[1].id;
  EXPECT_EQ(c.append(b, 3), 20);
  EXPECT_EQ(c.stats().blocks_used, 3);
  EXPECT_NE(c.blocks(b)[1].id, shared_tail);
  EXPECT_EQ(c.blocks(b)[0].id, c.blocks(a)[0].id);  // the full block stays shared
  EXPECT_EQ(c.refcount(shared_tail), 1);
  fill(c, b, 20, 3, 2);
  expect_rows(c, a, 0, 20, 1);  // a unchanged
  expect_rows(c, b, 0, 20, 1);  // b's copy of the prefix
  expect_rows(c, b, 20, 3, 2);

  // a owns its tail alone now: appending writes in place.
  c.append(a, 5);
  EXPECT_EQ(c.stats().blocks_used, 3);
  EXPECT_EQ(c.blocks(a)[1].id, shared_tail);
  fill(c, a, 20, 5, 3);
  expect_rows(c, a, 20, 5, 3);
  expect_rows(c, b, 20, 3, 2);
}

TEST(PagedKVCache, ForkInsideABlockAndAtABoundary) {
  PagedKVCache c(config(8));
  const auto a = c.create_sequence();
  c.append(a, 30);
  fill(c, a, 0, 30, 1);
  // Fork at 10: shares block 0 (a sees 16 rows of it, the fork 10).
  const auto b = c.fork(a, 10);
  ASSERT_EQ(c.blocks(b).size(), 1u);
  EXPECT_EQ(c.blocks(b)[0].n, 10);
  EXPECT_EQ(c.stats().blocks_used, 2);
  c.append(b, 1);  // copy-on-write of 10 rows
  EXPECT_EQ(c.stats().blocks_used, 3);
  fill(c, b, 10, 1, 2);
  expect_rows(c, b, 0, 10, 1);
  expect_rows(c, b, 10, 1, 2);
  expect_rows(c, a, 0, 30, 1);
  // Fork at 16, a block boundary: the shared block is full, appends take a new block.
  const auto d = c.fork(a, 16);
  c.append(d, 2);
  EXPECT_EQ(c.stats().blocks_used, 4);
  EXPECT_EQ(c.refcount(c.blocks(a)[0].id), 2);
  fill(c, d, 16, 2, 4);
  expect_rows(c, d, 0, 16, 1);
  expect_rows(c, a, 0, 30, 1);
  // Fork at 0: an empty sequence.
  const auto e = c.fork(a, 0);
  EXPECT_EQ(c.size(e), 0);
  EXPECT_TRUE(c.blocks(e).empty());
}

TEST(PagedKVCache, FreeAndTruncateReturnBlocks) {
  PagedKVCache c(config(6, 4));
  const auto a = c.create_sequence();
  c.append(a, 10);  // 3 blocks
  const auto b = c.fork(a, 10);
  EXPECT_EQ(c.free_blocks(), 3);
  c.free_sequence(a);  // b still holds every block
  EXPECT_EQ(c.free_blocks(), 3);
  EXPECT_FALSE(c.alive(a));
  EXPECT_THROW(c.size(a), Error);
  c.truncate(b, 5);  // keeps 2 blocks
  EXPECT_EQ(c.free_blocks(), 4);
  EXPECT_EQ(c.blocks(b).back().n, 1);
  c.truncate(b, 4);
  EXPECT_EQ(c.free_blocks(), 5);
  EXPECT_EQ(c.blocks(b).back().n, 4);
  c.free_sequence(b);
  EXPECT_EQ(c.free_blocks(), 6);
  PagedKVStats st = c.stats();
  EXPECT_EQ(st.blocks_used, 0);
  EXPECT_EQ(st.bytes_used, 0u);
  EXPECT_EQ(st.sequences, 0);
  EXPECT_EQ(st.bytes_total, 6 * st.block_bytes);
  // Freed ids are reused.
  const auto r = c.create_sequence();
  EXPECT_TRUE(r == a || r == b);
}

TEST(PagedKVCache, TruncateIntoASharedBlockThenAppendCopies) {
  PagedKVCache c(config(8, 4));
  const auto a = c.create_sequence();
  c.append(a, 8);  // 2 full blocks
  fill(c, a, 0, 8, 1);
  const auto b = c.fork(a, 8);
  c.truncate(b, 6);  // b's last block is shared and partial now
  EXPECT_EQ(c.stats().blocks_used, 2);
  c.append(b, 1);
  EXPECT_EQ(c.stats().blocks_used, 3);
  fill(c, b, 6, 1, 2);
  expect_rows(c, a, 0, 8, 1);
  expect_rows(c, b, 0, 6, 1);
  expect_rows(c, b, 6, 1, 2);
}

TEST(PagedKVCache, ExhaustionIsAResourceErrorAndChangesNothing) {
  PagedKVCache c(config(4, 4));
  const auto a = c.create_sequence();
  c.append(a, 14);  // 4 blocks, last one has 2 free rows
  c.append(a, 2);
  try {
    c.append(a, 5);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Resource);
    EXPECT_NE(std::string(e.what()).find("needs 2 blocks"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("0 of 4 blocks available"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(c.size(a), 16);
  // Copy-on-write needs a block too.
  c.truncate(a, 15);
  const auto b = c.fork(a, 15);
  EXPECT_EQ(c.free_blocks(), 0);
  EXPECT_THROW(c.append(b, 1), Error);
  EXPECT_EQ(c.size(b), 15);
  EXPECT_EQ(c.refcount(c.blocks(a).back().id), 2);
  c.free_sequence(a);
  EXPECT_EQ(c.append(b, 1), 15);  // b alone now: in place
  EXPECT_EQ(c.free_blocks(), 0);
}

TEST(PagedKVCache, BadArgumentsAreErrors) {
  EXPECT_THROW(PagedKVCache{config(4, 0)}, Error);
  EXPECT_THROW(PagedKVCache{config(4, 16, 30, DType::Q8_0)}, Error);
  EXPECT_THROW(PagedKVCache{config(4, 16, 32, DType::Q4_0)}, Error);
  PagedKVCache c(config(4));
  EXPECT_THROW(c.append(7, 1), Error);
  const auto a = c.create_sequence();
  c.append(a, 3);
  EXPECT_THROW(c.fork(a, 4), Error);
  EXPECT_THROW(c.truncate(a, 4), Error);
  EXPECT_THROW(c.append(a, -1), Error);
  EXPECT_THROW(c.k(0, a, 3), Error);
  EXPECT_THROW(c.k(2, a, 0), Error);
  const auto b = c.fork(a, 3);
  EXPECT_THROW(c.k(0, b, 0), Error);  // a shared row is read-only
  EXPECT_NO_THROW(std::as_const(c).k(0, b, 0));
}

TEST(PagedKVCache, Q8StorageRoundTripsWithinTheQ8Bound) {
  const int64_t kv_dim = 96;
  PagedKVCache c(config(16, 8, kv_dim, DType::Q8_0));
  EXPECT_EQ(c.row_bytes(), size_t(kv_dim / 32 * 34));
  std::mt19937 rng(7);
  const auto s = c.create_sequence();
  c.append(s, 37);
  std::vector<std::vector<float>> k(37), v(37);
  for (int64_t t = 0; t < 37; ++t) {
    k[size_t(t)] = random_row(rng, kv_dim);
    v[size_t(t)] = random_row(rng, kv_dim);
    for (float& x : v[size_t(t)]) x *= float(t + 1);  // varied scales
    c.write_k(1, s, t, k[size_t(t)].data());
    c.write_v(1, s, t, v[size_t(t)].data());
  }
  // |x - x'| <= d/2 + |q| * |d - f16(d)|, d = amax/127: within amax * (1/254 + 1/2048).
  auto check = [&](const std::vector<float>& want, const float* got) {
    for (int64_t b = 0; b < kv_dim; b += 32) {
      float amax = 0;
      for (int64_t j = b; j < b + 32; ++j) amax = std::max(amax, std::fabs(want[size_t(j)]));
      const float bound = amax * (1.f / 254 + 1.f / 2048) * 1.0001f;
      for (int64_t j = b; j < b + 32; ++j)
        ASSERT_LE(std::fabs(got[j] - want[size_t(j)]), bound);
    }
  };
  std::vector<float> out(static_cast<size_t>(kv_dim));
  for (int64_t t = 0; t < 37; ++t) {
    c.read_k(1, s, t, out.data());
    check(k[size_t(t)], out.data());
    c.read_v(1, s, t, out.data());
    check(v[size_t(t)], out.data());
  }
  // Block reads give the same values as row reads, also after a copy-on-write.
  const auto f = c.fork(s, 37);
  c.append(f, 1);
  std::vector<float> blk(static_cast<size_t>(8 * kv_dim)), row(static_cast<size_t>(kv_dim));
  int64_t t = 0;
  for (const BlockRef& b : c.blocks(f)) {
    c.read_k_block(1, b, blk.data());
    for (int32_t r = 0; r < b.n && t < 37; ++r, ++t) {
      c.read_k(1, s, t, row.data());
      for (int64_t e = 0; e < kv_dim; ++e) ASSERT_EQ(blk[size_t(r * kv_dim + e)], row[size_t(e)]);
    }
  }
  EXPECT_EQ(t, 37);
  // Q8 storage has no raw f32 row pointers.
  EXPECT_THROW(c.k_rows(0, 0), Error);
}
