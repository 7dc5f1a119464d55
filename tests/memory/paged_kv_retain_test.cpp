// Pages kept outside any sequence (a prefix cache): retain/release hold a block after its
// sequence ends, create_sequence_from (and the KVCache wrapper) restarts a sequence from
// such full blocks without copying, appends after them go to fresh blocks, and the pool
// accounts every reference.
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/memory/kv_cache.hpp"
#include "tandem/memory/paged_kv_cache.hpp"

using namespace tandem;

namespace {

PagedKVConfig config(int64_t n_blocks) {
  PagedKVConfig cfg;
  cfg.n_layer = 2;
  cfg.kv_dim = 8;
  cfg.block_size = 4;
  cfg.n_blocks = n_blocks;
  return cfg;
}

float value(int64_t layer, int kv, int64_t t, int64_t e) {
  return float(layer * 1000 + kv * 500 + t * 10) + float(e) * 0.01f;
}

void fill(PagedKVCache& c, PagedKVCache::SeqId s, int64_t t0, int64_t m) {
  std::vector<float> row(size_t(c.kv_dim()));
  for (int64_t l = 0; l < c.n_layer(); ++l)
    for (int64_t t = t0; t < t0 + m; ++t)
      for (int kv = 0; kv < 2; ++kv) {
        for (int64_t e = 0; e < c.kv_dim(); ++e) row[size_t(e)] = value(l, kv, t, e);
        kv == 0 ? c.write_k(l, s, t, row.data()) : c.write_v(l, s, t, row.data());
      }
}

TEST(PagedKVRetain, RetainedBlocksOutliveTheirSequenceAndRestartAnother) {
  PagedKVCache c(config(6));
  const auto s = c.create_sequence();
  c.append(s, 10);  // blocks 0, 1 full; 2 partial
  fill(c, s, 0, 10);
  std::vector<int32_t> full;
  for (const BlockRef& b : c.blocks(s))
    if (b.n == c.block_size()) full.push_back(b.id);
  ASSERT_EQ(full.size(), 2u);
  for (int32_t b : full) c.retain(b);
  EXPECT_EQ(c.refcount(full[0]), 2);
  c.free_sequence(s);
  // The partial block went back; the retained ones stay in use.
  EXPECT_EQ(c.stats().blocks_used, 2);
  EXPECT_EQ(c.stats().sequences, 0);
  EXPECT_EQ(c.refcount(full[1]), 1);

  const auto t = c.create_sequence_from(full);
  EXPECT_EQ(c.size(t), 8);
  EXPECT_EQ(c.refcount(full[0]), 2);
  EXPECT_EQ(c.stats().blocks_used, 2);  // nothing copied
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(c.position(t, i), i);
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(std::as_const(c).k(l, t, i)[3], value(l, 0, i, 3));
  // Appends go to a fresh block: the shared ones are never written.
  c.append(t, 3);
  EXPECT_EQ(c.stats().blocks_used, 3);
  fill(c, t, 8, 3);
  EXPECT_EQ(c.position(t, 10), 10);
  EXPECT_EQ(c.refcount(c.blocks(t)[2].id), 1);
  c.free_sequence(t);
  EXPECT_EQ(c.stats().blocks_used, 2);
  for (int32_t b : full) c.release(b);
  EXPECT_EQ(c.stats().blocks_used, 0);
  EXPECT_EQ(c.free_blocks(), 6);
}

TEST(PagedKVRetain, BadBlocksAreErrors) {
  PagedKVCache c(config(3));
  EXPECT_THROW(c.retain(0), Error);  // free
  EXPECT_THROW(c.release(0), Error);
  EXPECT_THROW(c.retain(3), Error);  // out of range
  EXPECT_THROW(c.retain(-1), Error);
  const std::vector<int32_t> bad{1};
  EXPECT_THROW(c.create_sequence_from(bad), Error);
  EXPECT_EQ(c.stats().sequences, 0);
  const std::vector<int32_t> none;
  const auto s = c.create_sequence_from(none);  // an empty start is a plain new sequence
  EXPECT_EQ(c.size(s), 0);
  c.append(s, 4);
  c.retain(c.blocks(s)[0].id);
  c.free_sequence(s);
  c.release(0);
  EXPECT_THROW(c.release(0), Error);  // the last reference is gone
  EXPECT_EQ(c.free_blocks(), 3);
}

TEST(PagedKVRetain, KVCacheStartsFromKeptPages) {
  auto pool = make_kv_pool(2, 16, 8, KVCacheOptions{4, DType::F32, 0});
  std::vector<int32_t> kept;
  {
    KVCache a(pool, 0);
    std::vector<int32_t> pos{0, 1, 2, 3, 4};
    a.append(5, pos.data());
    for (const BlockRef& b : a.blocks())
      if (b.n == 4) kept.push_back(b.id);
    for (int32_t b : kept) pool->retain(b);
  }
  EXPECT_EQ(pool->stats().blocks_used, 1);
  {
    KVCache b(pool, 12, kept);
    EXPECT_EQ(b.size(), 4);
    EXPECT_EQ(b.blocks()[0].id, kept[0]);
    EXPECT_EQ(pool->refcount(kept[0]), 2);
    std::vector<int32_t> pos{4};
    b.append(1, pos.data());
    EXPECT_EQ(pool->stats().blocks_used, 2);
    // Over the capacity, or a block not in use: an error, and the pool is unchanged.
    EXPECT_THROW(KVCache(pool, 3, kept), Error);
    const std::vector<int32_t> freed{3};
    EXPECT_THROW(KVCache(pool, 0, freed), Error);
    EXPECT_EQ(pool->stats().sequences, 1);
    EXPECT_EQ(pool->refcount(kept[0]), 2);
  }
  EXPECT_EQ(pool->stats().blocks_used, 1);
  pool->release(kept[0]);
  EXPECT_EQ(pool->stats().blocks_used, 0);
}

}  // namespace
