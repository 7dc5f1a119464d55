#include "serve/prefix_cache.hpp"

#include <algorithm>
#include <utility>

namespace tandem::serve {

namespace {

uint64_t mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t chain_hash(uint64_t prev, std::span<const int32_t> page) {
  uint64_t h = mix(prev + 0x9e3779b97f4a7c15ULL);
  for (int32_t t : page) h = mix(h ^ uint64_t(uint32_t(t)));
  return h;
}

}  // namespace

PrefixCache::PrefixCache(std::shared_ptr<PagedKVCache> pool, HashFn hash)
    : pool_(std::move(pool)), hash_(hash ? std::move(hash) : HashFn(chain_hash)),
      page_(pool_->block_size()) {}

PrefixCache::~PrefixCache() { clear(); }

template <class F>
void PrefixCache::walk(std::span<const int32_t> tokens, int64_t max_pages, F&& f) const {
  const int64_t n = std::min<int64_t>(max_pages, int64_t(tokens.size()) / page_);
  uint64_t key = 0, parent = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto page = tokens.subspan(size_t(i * page_), size_t(page_));
    key = hash_(key, page);
    auto it = entries_.find(key);
    // The hash only finds the candidate: its parent and its tokens must match too.
    if (it == entries_.end() || it->second.parent != parent ||
        !std::equal(page.begin(), page.end(), it->second.tokens.begin(), it->second.tokens.end()))
      return;
    f(key, it->second);
    parent = it->second.id;
  }
}

std::vector<int32_t> PrefixCache::match(std::span<const int32_t> tokens, int64_t max_pages) const {
  std::vector<int32_t> blocks;
  walk(tokens, max_pages, [&](uint64_t, const Entry& e) { blocks.push_back(e.block); });
  return blocks;
}

void PrefixCache::touch(std::span<const int32_t> tokens, int64_t pages) {
  std::vector<std::list<uint64_t>::iterator> hit;
  walk(tokens, pages, [&](uint64_t, const Entry& e) { hit.push_back(e.lru); });
  // Deepest first, so that the first page ends up the most recent: a page's descendants
  // are evicted before it, and a chain never loses its head while its tail is kept.
  for (auto it = hit.rbegin(); it != hit.rend(); ++it) lru_.splice(lru_.begin(), lru_, *it);
}

void PrefixCache::insert(std::span<const int32_t> tokens, std::span<const BlockRef> blocks) {
  const int64_t n = std::min<int64_t>(int64_t(tokens.size()) / page_, int64_t(blocks.size()));
  uint64_t key = 0, parent = 0;
  int64_t kept = 0;
  for (int64_t i = 0; i < n && blocks[size_t(i)].n == page_; ++i, ++kept) {
    const auto page = tokens.subspan(size_t(i * page_), size_t(page_));
    key = hash_(key, page);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      const Entry& e = it->second;
      const bool same = e.parent == parent && std::equal(page.begin(), page.end(),
                                                         e.tokens.begin(), e.tokens.end());
      if (same) {
        parent = e.id;
        continue;
      }
      // Another chain under this key (a collision, or a page whose parent was evicted):
      // replace it when only the cache holds it, else keep it and stop here.
      if (pool_->refcount(e.block) != 1) break;
      drop(it);
    }
    Entry e;
    e.id = next_id_++;
    e.parent = parent;
    e.block = blocks[size_t(i)].id;
    e.tokens.assign(page.begin(), page.end());
    pool_->retain(e.block);
    lru_.push_front(key);
    e.lru = lru_.begin();
    parent = e.id;
    entries_.emplace(key, std::move(e));
  }
  touch(tokens, kept);
}

int64_t PrefixCache::evictable() const {
  int64_t n = 0;
  for (const auto& [key, e] : entries_) n += pool_->refcount(e.block) == 1 ? 1 : 0;
  return n;
}

void PrefixCache::drop(std::unordered_map<uint64_t, Entry>::iterator it) {
  pool_->release(it->second.block);
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

int64_t PrefixCache::evict(int64_t n) {
  int64_t freed = 0;
  const std::vector<uint64_t> oldest_first(lru_.rbegin(), lru_.rend());
  for (uint64_t key : oldest_first) {
    if (freed >= n) break;
    auto it = entries_.find(key);
    if (pool_->refcount(it->second.block) != 1) continue;  // a sequence uses it
    drop(it);
    ++freed;
  }
  return freed;
}

void PrefixCache::clear() {
  for (auto& [key, e] : entries_) pool_->release(e.block);
  entries_.clear();
  lru_.clear();
}

}  // namespace tandem::serve
