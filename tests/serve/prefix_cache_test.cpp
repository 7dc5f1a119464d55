// The scheduler's prefix cache on a bare pool: chain-hash lookup checked token by token
// and by parent (a colliding hash never hands out another prefix's pages), references
// held per page, LRU eviction of pages only the cache holds, clear().
#include "serve/prefix_cache.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace tandem;
using namespace tandem::serve;

namespace {

PagedKVConfig config(int64_t blocks) {
  PagedKVConfig c;
  c.n_layer = 1;
  c.kv_dim = 4;
  c.block_size = 4;
  c.n_blocks = blocks;
  return c;
}

std::vector<int32_t> seq_tokens(int32_t from, int n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[size_t(i)] = from + i;
  return t;
}

// A sequence holding `tokens` in the pool; the cache keeps its full pages; then it ends.
void run_and_keep(const std::shared_ptr<PagedKVCache>& pool, PrefixCache& c,
                  const std::vector<int32_t>& tokens) {
  const auto s = pool->create_sequence();
  pool->append(s, int64_t(tokens.size()));
  c.insert(tokens, pool->blocks(s));
  pool->free_sequence(s);
}

TEST(PrefixCache, LongestMatchingRunOfFullPages) {
  auto pool = std::make_shared<PagedKVCache>(config(16));
  PrefixCache c(pool);
  const auto a = seq_tokens(0, 10);  // 2 full pages
  run_and_keep(pool, c, a);
  EXPECT_EQ(c.pages(), 2);
  EXPECT_EQ(pool->stats().blocks_used, 2);
  EXPECT_EQ(c.evictable(), 2);
  EXPECT_EQ(c.match(a, 10).size(), 2u);
  EXPECT_EQ(c.match(a, 1).size(), 1u);
  auto b = a;
  b[5] = 99;  // second page differs
  EXPECT_EQ(c.match(b, 10).size(), 1u);
  b[0] = 99;
  EXPECT_TRUE(c.match(b, 10).empty());
  // Same second page after another first page: no match (the chain differs).
  auto d = seq_tokens(50, 4);
  d.insert(d.end(), a.begin() + 4, a.end());
  EXPECT_TRUE(c.match(d, 10).empty());
  // Inserting what is cached again adds nothing.
  run_and_keep(pool, c, a);
  EXPECT_EQ(c.pages(), 2);
  EXPECT_EQ(pool->stats().blocks_used, 2);
  c.clear();
  EXPECT_EQ(pool->stats().blocks_used, 0);
}

TEST(PrefixCache, CollidingHashesAreCheckedByTokens) {
  auto pool = std::make_shared<PagedKVCache>(config(16));
  PrefixCache c(pool, [](uint64_t, std::span<const int32_t>) { return uint64_t(7); });
  const auto a = seq_tokens(0, 4), b = seq_tokens(100, 4);
  run_and_keep(pool, c, a);
  EXPECT_EQ(c.match(a, 1).size(), 1u);
  EXPECT_TRUE(c.match(b, 1).empty());  // same key, other tokens
  // b takes the key over (a's page was held by the cache alone).
  run_and_keep(pool, c, b);
  EXPECT_EQ(c.pages(), 1);
  EXPECT_TRUE(c.match(a, 1).empty());
  EXPECT_EQ(c.match(b, 1).size(), 1u);
  EXPECT_EQ(pool->stats().blocks_used, 1);
  // Every page of one chain under the same key: the second page's parent check fails.
  auto ab = a;
  ab.insert(ab.end(), a.begin(), a.end());
  c.clear();
  run_and_keep(pool, c, ab);
  EXPECT_EQ(c.match(ab, 2).size(), 1u);
}

TEST(PrefixCache, EvictsLeastRecentlyUsedPagesNoSequenceHolds) {
  auto pool = std::make_shared<PagedKVCache>(config(8));
  PrefixCache c(pool);
  const auto a = seq_tokens(0, 8), b = seq_tokens(100, 8);
  run_and_keep(pool, c, a);
  run_and_keep(pool, c, b);
  EXPECT_EQ(c.evictable(), 4);
  c.touch(a, 2);  // a most recent: b goes first, its deeper page before its first
  // A sequence using b's first page holds it: not evictable.
  const auto blocks = c.match(b, 1);
  const auto s = pool->create_sequence_from(blocks);
  EXPECT_EQ(c.evictable(), 3);
  EXPECT_EQ(c.evict(1), 1);
  EXPECT_EQ(c.match(b, 2).size(), 1u);  // b's second page went
  EXPECT_EQ(c.match(a, 2).size(), 2u);
  EXPECT_EQ(c.evict(10), 2);  // a's two; b's first is in use
  EXPECT_EQ(c.pages(), 1);
  pool->free_sequence(s);
  EXPECT_EQ(c.evictable(), 1);
  EXPECT_EQ(c.evict(10), 1);
  EXPECT_EQ(pool->stats().blocks_used, 0);
}

}  // namespace
