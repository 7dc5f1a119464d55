#pragma once
// The KV cache of one sequence: for each layer, the K and V rows (kv_dim = G*d values
// each) of every stored token, plus its global position (positions travel with tokens
// so attention can mask by position, also when the sequence is split across ranks).
//
// Storage is a PagedKVCache (paged_kv_cache.hpp): the rows live in pages of
// page_tokens tokens taken from a pool, found through the sequence's block table.
// With page_tokens = 0 the pool is one page as large as the capacity, so every layer's
// rows are one contiguous run (contiguous()): the layout sequence-parallel strategies
// and the materialized attention read directly. Attention kernels read either form
// through pages() (KvPages).
//
// fork() makes another sequence in the same pool that shares this one's first n
// tokens (their pages are shared, the last partial page is copied on its next write).
//
// Many sequences in one pool (a server's --kv-pool): make_kv_pool() reserves the pages
// once and KVCache(pool, capacity) makes each sequence in it; the pool's stats() says
// how many pages are in use and free. Sequences share nothing but the free pages.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "tandem/core/dtype.hpp"
#include "tandem/memory/kv_pages.hpp"
#include "tandem/memory/paged_kv_cache.hpp"

namespace tandem {

struct KVCacheOptions {
  int64_t page_tokens = 0;     // tokens per page; 0: one contiguous page (capacity tokens)
  DType type = DType::F32;     // row storage: F32, or Q8_0 (kv_dim a multiple of 32)
  int64_t pool_tokens = 0;     // tokens the pool holds for all forks; 0: capacity
};

// A pool of `tokens` tokens (rounded up to whole pages of opt.page_tokens > 0;
// opt.pool_tokens is ignored) for many sequences. Throws Error(BadInput) for a bad
// option (page_tokens 0: one page could hold one sequence only), Error(Resource) if the
// pool cannot be allocated.
std::shared_ptr<PagedKVCache> make_kv_pool(int64_t n_layer, int64_t tokens, int64_t kv_dim,
                                           const KVCacheOptions& opt);

class KVCache {
 public:
  KVCache() = default;
  // Reserves a pool for `capacity` tokens (or opt.pool_tokens); throws Error(Resource)
  // if it cannot, Error(BadInput) for a bad option.
  KVCache(int64_t n_layer, int64_t capacity, int64_t kv_dim, const KVCacheOptions& opt = {});
  // A new empty sequence in a shared pool, of at most `capacity` tokens (0: the pool's
  // size); its pages come from the pool as it grows and go back when it is dropped.
  KVCache(std::shared_ptr<PagedKVCache> pool, int64_t capacity);
  // A sequence in a shared pool that starts from `blocks`, full pages of that pool in use
  // (PagedKVCache::create_sequence_from): it holds their tokens, nothing copied. Throws
  // Error(BadInput) for a bad block or when they exceed `capacity` (0: the pool's size).
  KVCache(std::shared_ptr<PagedKVCache> pool, int64_t capacity, std::span<const int32_t> blocks);
  KVCache(KVCache&& o) noexcept;
  KVCache& operator=(KVCache&& o) noexcept;
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;
  ~KVCache();

  int64_t n_layer() const { return n_layer_; }
  int64_t capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  int64_t size() const { return pool_ ? pool_->size(seq_) : 0; }
  int64_t page_tokens() const { return page_; }
  DType type() const { return type_; }
  // One page of F32 rows: k(layer, 0) .. k(layer, size() - 1) are consecutive.
  bool contiguous() const { return contiguous_; }

  // Appends m token slots with the given positions and returns the first slot's
  // index; the caller then fills their K/V rows in every layer (write()). Throws
  // Error(Resource) when the cache (or its pool) is full, and leaves the cache and the
  // pool unchanged then.
  int64_t append(int64_t m, const int32_t* pos);
  // Drops every token from slot n on (pages no sequence uses go back to the pool).
  void truncate(int64_t n);

  // Rows [slot, slot + count) of one layer from k and v ([count][kv_dim] each),
  // quantized for Q8_0 storage.
  void write(int64_t layer, int64_t slot, int64_t count, const float* k, const float* v);

  // Rows [first, first + count) of one layer as f32 ([count][kv_dim] each; quantized
  // rows dequantized), gathered across pages; and their positions.
  void read(int64_t layer, int64_t first, int64_t count, float* k, float* v) const;
  void read_positions(int64_t first, int64_t count, int32_t* out) const;
  // rows rows of kv_dim values as this cache stores them: quantized to its row type and
  // back (a copy for f32 rows).
  void round_trip(const float* in, float* out, int64_t rows) const;

  // The rows of a contiguous() cache (throw Error(Internal) otherwise).
  const float* k(int64_t layer, int64_t slot) const;
  const float* v(int64_t layer, int64_t slot) const;
  const int32_t* positions() const;

  // The keys of one layer as attention kernels read them (AttentionArgs::pages). Valid
  // until the next change of this cache or of its pool.
  KvPages pages(int64_t layer) const;

  // The sequence's block table in token order (PagedKVCache::blocks): which pool pages
  // hold its tokens. Valid until the next change of this cache or of its pool.
  std::span<const BlockRef> blocks() const;

  // A new sequence in this cache's pool sharing its first n tokens (nothing copied);
  // its capacity is this one's.
  KVCache fork(int64_t n) const;

  // Bytes reserved for K and V rows (the whole pool), and those of one page (all layers).
  size_t bytes() const;
  size_t page_bytes() const;
  // Bytes of the pages in use (shared pages counted once), and the pool's counters.
  size_t used_bytes() const;
  PagedKVStats stats() const;
  // The pool this sequence lives in (shared with its forks and with the other sequences
  // made in it).
  const std::shared_ptr<PagedKVCache>& pool() const { return pool_; }

 private:
  KVCache(std::shared_ptr<PagedKVCache> pool, PagedKVCache::SeqId seq, const KVCache& like);
  void release();

  std::shared_ptr<PagedKVCache> pool_;
  PagedKVCache::SeqId seq_ = -1;
  int64_t n_layer_ = 0, capacity_ = 0, kv_dim_ = 0, page_ = 0;
  DType type_ = DType::F32;
  bool contiguous_ = false;
  mutable std::vector<KvPage> pages_;  // pages() of the last layer asked
  mutable std::vector<float> row_buf_;  // read(): one page of dequantized rows
};

}  // namespace tandem
