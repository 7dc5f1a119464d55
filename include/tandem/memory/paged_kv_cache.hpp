#pragma once
// Paged KV cache: the K and V rows of every sequence live in fixed-size blocks of
// block_size tokens, taken from one pool reserved once for the worst case. Each
// sequence has a block table (a list of pool blocks in token order); blocks carry a
// reference count so sequences can share a prefix (fork) without copying it.
//
// Pool layout, per block b (each chunk padded to 64 bytes):
//   [layer 0 K rows][layer 0 V rows][layer 1 K rows] ... [layer L-1 V rows]
// where a chunk holds block_size rows of row_bytes() bytes: kv_dim f32 values (F32
// storage) or kv_dim/32 Q8_0 blocks (Q8_0 storage). Positions are stored per block too,
// so they are shared with the rows.
//
// Sharing rules: fork(src, n) makes a new sequence whose table references the blocks
// holding src's first n tokens (refcount + 1 each, nothing copied). Only the last block
// of a table is ever written (appends go to the tail), so a write happens only to a
// partial last block; if that block is shared (refcount > 1) append first copies its
// used rows into a fresh block (copy-on-write) and drops one reference to the old one.
//
// No heap allocation happens in append/truncate/free/fork once a sequence exists: blocks
// come from the pool's free list and block tables reserve room for every pool block.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "tandem/core/dtype.hpp"

namespace tandem {

struct PagedKVConfig {
  int64_t n_layer = 0;
  int64_t kv_dim = 0;          // values per K (or V) row: G*d
  int64_t block_size = 16;     // tokens per block
  int64_t n_blocks = 0;        // pool capacity in blocks (worst case, reserved once)
  DType storage = DType::F32;  // F32, or Q8_0 (kv_dim a multiple of 32)
};

// One entry of a sequence's block table, as attention kernels see it: the pool block,
// how many of its rows belong to this sequence (block_size except in the last entry),
// and the positions of those rows.
struct BlockRef {
  int32_t id = -1;
  int32_t n = 0;
  const int32_t* pos = nullptr;
};

struct PagedKVStats {
  int64_t blocks_total = 0;
  int64_t blocks_used = 0;    // refcount > 0
  int64_t blocks_free = 0;
  int64_t blocks_shared = 0;  // refcount > 1
  int64_t sequences = 0;      // live sequences
  int64_t tokens = 0;         // tokens summed over live sequences (shared ones counted per user)
  size_t block_bytes = 0;     // K+V bytes of one block, all layers, plus its positions
  size_t bytes_total = 0;     // the pool
  size_t bytes_used = 0;      // blocks_used * block_bytes
};

class PagedKVCache {
 public:
  using SeqId = int32_t;

  // Reserves the pool; throws Error(BadInput) for a bad config and Error(Resource) when
  // the pool cannot be allocated.
  explicit PagedKVCache(const PagedKVConfig& cfg);
  PagedKVCache(PagedKVCache&&) noexcept = default;
  PagedKVCache& operator=(PagedKVCache&&) noexcept = default;
  PagedKVCache(const PagedKVCache&) = delete;
  PagedKVCache& operator=(const PagedKVCache&) = delete;
  ~PagedKVCache() = default;

  int64_t n_layer() const { return cfg_.n_layer; }
  int64_t kv_dim() const { return cfg_.kv_dim; }
  int64_t block_size() const { return cfg_.block_size; }
  int64_t n_blocks() const { return cfg_.n_blocks; }
  DType storage() const { return cfg_.storage; }
  size_t row_bytes() const { return row_bytes_; }
  int64_t free_blocks() const { return int64_t(free_.size()); }

  // Sequences. Ids of freed sequences are reused. Unknown ids throw Error(BadInput).
  SeqId create_sequence();
  // A new sequence sharing src's first n tokens (0 <= n <= size(src)); copies nothing.
  SeqId fork(SeqId src, int64_t n);
  void free_sequence(SeqId s);
  // A new sequence whose table is `blocks`, full blocks in use (refcount > 0) in token
  // order, each taking one more reference: it holds blocks.size() * block_size tokens
  // with the positions stored in those blocks, and appends go to fresh blocks. Copies
  // nothing (a prefix cache restarts a sequence from the pages it kept). Throws
  // Error(BadInput) for a block out of range or not in use.
  SeqId create_sequence_from(std::span<const int32_t> blocks);
  bool alive(SeqId s) const;
  int64_t size(SeqId s) const;
  // Drops every token from index n on; blocks no sequence references return to the pool.
  void truncate(SeqId s, int64_t n);
  // Appends m tokens with positions pos[0..m) (nullptr: positions size(s), size(s)+1, ...)
  // and returns the first new token's index; the caller then writes their rows in every
  // layer. Throws Error(Resource) naming blocks needed vs available when the pool cannot
  // hold them; the cache is unchanged then.
  int64_t append(SeqId s, int64_t m, const int32_t* pos = nullptr);

  // The block table of s, in token order: token t is row t % block_size of entry
  // t / block_size. Valid until the next change of s.
  std::span<const BlockRef> blocks(SeqId s) const;
  int32_t position(SeqId s, int64_t t) const;
  // The block_size positions of a pool block (those of its used rows are valid).
  const int32_t* block_positions(int32_t block) const;
  int32_t refcount(int32_t block) const;
  // References held outside any sequence (a prefix cache keeping a page after its
  // sequence ends): retain adds one to a block in use (refcount > 0); release drops one,
  // and the block returns to the pool when none is left. Both throw Error(BadInput) for
  // a block out of range or not in use.
  void retain(int32_t block);
  void release(int32_t block);

  // Row access, F32 storage only. Mutable rows must be in an unshared block (true for
  // every token appended since the last fork of s).
  float* k(int64_t layer, SeqId s, int64_t t) { return mutable_row(layer, 0, s, t); }
  float* v(int64_t layer, SeqId s, int64_t t) { return mutable_row(layer, 1, s, t); }
  const float* k(int64_t layer, SeqId s, int64_t t) const { return f32_row(layer, 0, s, t); }
  const float* v(int64_t layer, SeqId s, int64_t t) const { return f32_row(layer, 1, s, t); }
  // Rows [block_size][kv_dim] of a pool block in one layer (F32 storage only).
  const float* k_rows(int64_t layer, int32_t block) const { return f32_rows(layer, 0, block); }
  const float* v_rows(int64_t layer, int32_t block) const { return f32_rows(layer, 1, block); }

  // Row access for any storage: writes quantize (Q8_0), reads dequantize into out.
  void write_k(int64_t layer, SeqId s, int64_t t, const float* row) { write(layer, 0, s, t, row); }
  void write_v(int64_t layer, SeqId s, int64_t t, const float* row) { write(layer, 1, s, t, row); }
  void read_k(int64_t layer, SeqId s, int64_t t, float* out) const { read(layer, 0, s, t, out); }
  void read_v(int64_t layer, SeqId s, int64_t t, float* out) const { read(layer, 1, s, t, out); }
  // out[b.n][kv_dim] = the rows of table entry b in one layer.
  void read_k_block(int64_t layer, const BlockRef& b, float* out) const;
  void read_v_block(int64_t layer, const BlockRef& b, float* out) const;
  // The stored rows of a pool block in one layer (row_bytes() apart), any storage.
  const std::byte* k_data(int64_t layer, int32_t block) const { return chunk(layer, 0, block); }
  const std::byte* v_data(int64_t layer, int32_t block) const { return chunk(layer, 1, block); }

  PagedKVStats stats() const;

 private:
  struct Sequence {
    std::vector<BlockRef> table;  // capacity n_blocks, reserved once
    int64_t size = 0;
    bool alive = false;
  };
  struct AlignedFree {
    void operator()(std::byte* p) const;
  };

  const Sequence& seq(SeqId s) const;
  Sequence& seq(SeqId s);
  void check_layer(int64_t layer) const;
  void check_in_use(int32_t block) const;
  // The row of token t of s in (layer, kv); kv 0 = K, 1 = V.
  const std::byte* row_ptr(int64_t layer, int kv, SeqId s, int64_t t) const;
  std::byte* chunk(int64_t layer, int kv, int32_t block) const {
    return pool_.get() + size_t(block) * block_stride_ + size_t(layer * 2 + kv) * chunk_stride_;
  }
  float* mutable_row(int64_t layer, int kv, SeqId s, int64_t t);
  const float* f32_row(int64_t layer, int kv, SeqId s, int64_t t) const;
  const float* f32_rows(int64_t layer, int kv, int32_t block) const;
  void write(int64_t layer, int kv, SeqId s, int64_t t, const float* row);
  void read(int64_t layer, int kv, SeqId s, int64_t t, float* out) const;
  void read_block(int64_t layer, int kv, const BlockRef& b, float* out) const;
  int32_t take_block();
  void release_block(int32_t block);
  void copy_on_write(Sequence& q);

  PagedKVConfig cfg_;
  size_t row_bytes_ = 0;
  size_t chunk_stride_ = 0;  // one (layer, K|V) chunk of a block
  size_t block_stride_ = 0;  // one block, every layer
  std::unique_ptr<std::byte[], AlignedFree> pool_;
  std::vector<int32_t> pos_;       // [n_blocks][block_size]
  std::vector<int32_t> refcount_;  // [n_blocks]
  std::vector<int32_t> free_;      // stack of free blocks, capacity n_blocks
  std::vector<Sequence> seqs_;
  std::vector<SeqId> free_seqs_;
};

}  // namespace tandem
