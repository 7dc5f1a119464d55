// The append path of the paged KV cache never touches the heap: blocks come from the
// pool reserved at construction and block tables reserve room for every pool block.
// This binary replaces the global operator new to count allocations.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "tandem/memory/paged_kv_cache.hpp"

namespace {
std::atomic<long> g_allocs{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// GCC flags free() of a pointer from operator new even in a replacement operator delete.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

using namespace tandem;

TEST(PagedKVAlloc, AppendForkTruncateFreeDoNotAllocate) {
  PagedKVConfig cfg;
  cfg.n_layer = 2;
  cfg.kv_dim = 32;
  cfg.block_size = 8;
  cfg.n_blocks = 64;
  PagedKVCache c(cfg);
  // Create the sequence slots up front; freed slots are reused without allocating.
  std::vector<PagedKVCache::SeqId> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(c.create_sequence());
  for (auto s : ids) c.free_sequence(s);
  std::vector<float> row(32, 1.5f);
  std::vector<int32_t> pos(100);
  for (int i = 0; i < 100; ++i) pos[size_t(i)] = i;

  const long before = g_allocs.load();
  const auto a = c.create_sequence();
  for (int t = 0; t < 100; ++t) {  // token by token, as decode does
    c.append(a, 1, pos.data() + t);
    for (int64_t l = 0; l < 2; ++l) {
      c.write_k(l, a, t, row.data());
      c.write_v(l, a, t, row.data());
    }
  }
  const auto b = c.fork(a, 77);
  c.append(b, 30, pos.data());  // copy-on-write, then fresh blocks
  c.truncate(a, 10);
  c.append(a, 50, pos.data());
  c.free_sequence(b);
  c.free_sequence(a);
  EXPECT_EQ(g_allocs.load() - before, 0);
  // The counter does see the cache's allocations: a new sequence slot reserves its table.
  std::vector<PagedKVCache::SeqId> more;
  more.reserve(8);
  const long before_create = g_allocs.load();
  for (int i = 0; i < 5; ++i) more.push_back(c.create_sequence());
  EXPECT_GT(g_allocs.load() - before_create, 0);
}
