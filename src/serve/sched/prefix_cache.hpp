#pragma once
// The scheduler's prefix cache: full KV pages kept after their sequence ends, each under
// the chain hash of every token up to its end (hash of the previous page's key and this
// page's tokens). A hit is checked token by token and by its parent entry, so a hash
// collision can never hand out another prefix's pages. The cache holds one pool reference
// per page (PagedKVCache::retain); pages no sequence uses any more are "evictable" and go
// back to the pool least recently used first. Engine thread only: not thread-safe.
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "tandem/memory/paged_kv_cache.hpp"

namespace tandem::serve {

class PrefixCache {
 public:
  // hash(prev, tokens) -> the key of a page; the default is a 64-bit chain hash (tests
  // pass a colliding one).
  using HashFn = std::function<uint64_t(uint64_t prev, std::span<const int32_t> page)>;
  PrefixCache(std::shared_ptr<PagedKVCache> pool, HashFn hash = {});
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The pool blocks of the longest run of cached pages that `tokens` begins with, at most
  // max_pages of them. Changes nothing (touch() marks them used).
  std::vector<int32_t> match(std::span<const int32_t> tokens, int64_t max_pages) const;
  // Marks the pages of match(tokens, pages) most recently used (the first page most).
  void touch(std::span<const int32_t> tokens, int64_t pages);
  // Keeps the full pages of a sequence: blocks[i] holds tokens [i*P, (i+1)*P) for
  // i < tokens.size() / P. Pages already cached are touched, not duplicated.
  void insert(std::span<const int32_t> tokens, std::span<const BlockRef> blocks);
  // Pages held by the cache alone (refcount 1): what evict() can free.
  int64_t evictable() const;
  // Frees up to n evictable pages, least recently used first; returns how many.
  int64_t evict(int64_t n);
  // Drops every page the cache holds (pages in use by a sequence stay with it).
  void clear();
  int64_t pages() const { return int64_t(entries_.size()); }

 private:
  struct Entry {
    uint64_t id = 0, parent = 0;  // parent: the previous page's entry id (0: first page)
    int32_t block = -1;
    std::vector<int32_t> tokens;
    std::list<uint64_t>::iterator lru;  // position in lru_ (front: most recent)
  };
  // Walks the cached chain of tokens: calls f(key, entry) for each matching page.
  template <class F>
  void walk(std::span<const int32_t> tokens, int64_t max_pages, F&& f) const;
  void drop(std::unordered_map<uint64_t, Entry>::iterator it);

  std::shared_ptr<PagedKVCache> pool_;
  HashFn hash_;
  int64_t page_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Entry> entries_;  // by chain hash
  std::list<uint64_t> lru_;                      // keys, most recent first
};

}  // namespace tandem::serve
