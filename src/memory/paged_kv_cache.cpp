#include "tandem/memory/paged_kv_cache.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "tandem/core/error.hpp"
#include "tandem/core/quant_rows.hpp"

namespace tandem {

namespace {

constexpr size_t kAlign = 64;
// The pool's alignment: a transparent huge page, so the kernel may back it with 2 MiB
// pages (MADV_HUGEPAGE). A prefill writes fresh rows of the pool: with 4 KiB pages each
// of them costs a page fault, which on a virtual machine took 1.5 ms of every 5.5 ms
// layer step of a 256-token prefill (tiny preset, 2 threads).
constexpr size_t kPoolAlign = size_t(2) << 20;

size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

void PagedKVCache::AlignedFree::operator()(std::byte* p) const {
  ::operator delete[](p, std::align_val_t(kPoolAlign));
}

PagedKVCache::PagedKVCache(const PagedKVConfig& cfg) : cfg_(cfg) {
  if (cfg.n_layer <= 0) bad_input("paged KV cache: n_layer must be > 0 (got {})", cfg.n_layer);
  if (cfg.kv_dim <= 0) bad_input("paged KV cache: kv_dim must be > 0 (got {})", cfg.kv_dim);
  if (cfg.block_size <= 0 || cfg.block_size > (1 << 20))
    bad_input("paged KV cache: block_size must be in [1, 2^20] (got {})", cfg.block_size);
  if (cfg.n_blocks < 0 || cfg.n_blocks > std::numeric_limits<int32_t>::max())
    bad_input("paged KV cache: n_blocks must be in [0, 2^31) (got {})", cfg.n_blocks);
  if (cfg.storage != DType::F32 && cfg.storage != DType::Q8_0)
    bad_input("paged KV cache: storage must be f32 or q8_0 (got {})", dtype_name(cfg.storage));
  if (cfg.storage == DType::Q8_0 && cfg.kv_dim % kQBlock != 0)
    bad_input("paged KV cache: q8_0 storage needs kv_dim a multiple of {} (got {})", kQBlock,
              cfg.kv_dim);

  row_bytes_ = tandem::row_bytes(cfg.storage, cfg.kv_dim);
  chunk_stride_ = round_up(size_t(cfg.block_size) * row_bytes_, kAlign);
  block_stride_ = size_t(cfg.n_layer) * 2 * chunk_stride_;
  const size_t n = size_t(cfg.n_blocks);
  if (n != 0 && block_stride_ > std::numeric_limits<size_t>::max() / n)
    fail(ErrorKind::Resource, "paged KV cache: {} blocks of {} bytes overflow the address space",
         n, block_stride_);
  const size_t pool_bytes = n * block_stride_;
  try {
    // Left uninitialized: only rows that were written are ever read or copied, and
    // untouched pages of a large worst-case pool cost no physical memory.
    pool_.reset(static_cast<std::byte*>(::operator new[](std::max<size_t>(pool_bytes, 1),
                                                         std::align_val_t(kPoolAlign))));
    // Advice only: where huge pages are refused the pool keeps 4 KiB pages. Untouched
    // parts still cost no physical memory, now in steps of 2 MiB.
    if (pool_bytes >= kPoolAlign) ::madvise(pool_.get(), pool_bytes / kPoolAlign * kPoolAlign, MADV_HUGEPAGE);
    pos_.assign(n * size_t(cfg.block_size), 0);
    refcount_.assign(n, 0);
    free_.reserve(n);
  } catch (const std::bad_alloc&) {
    fail(ErrorKind::Resource, "cannot allocate the paged KV cache: {} blocks need {} MiB",
         cfg.n_blocks, pool_bytes >> 20);
  }
  // Stack order: block 0 is taken first.
  for (size_t i = n; i-- > 0;) free_.push_back(int32_t(i));
}

// ---- sequences ----

const PagedKVCache::Sequence& PagedKVCache::seq(SeqId s) const {
  if (s < 0 || size_t(s) >= seqs_.size() || !seqs_[size_t(s)].alive)
    bad_input("paged KV cache: unknown sequence id {}", s);
  return seqs_[size_t(s)];
}

PagedKVCache::Sequence& PagedKVCache::seq(SeqId s) {
  return const_cast<Sequence&>(std::as_const(*this).seq(s));
}

bool PagedKVCache::alive(SeqId s) const {
  return s >= 0 && size_t(s) < seqs_.size() && seqs_[size_t(s)].alive;
}

int64_t PagedKVCache::size(SeqId s) const { return seq(s).size; }

std::span<const BlockRef> PagedKVCache::blocks(SeqId s) const { return seq(s).table; }

int32_t PagedKVCache::position(SeqId s, int64_t t) const {
  const Sequence& q = seq(s);
  TD_CHECK(t >= 0 && t < q.size);
  return q.table[size_t(t / cfg_.block_size)].pos[t % cfg_.block_size];
}

const int32_t* PagedKVCache::block_positions(int32_t block) const {
  TD_CHECK(block >= 0 && block < cfg_.n_blocks);
  return pos_.data() + size_t(block) * size_t(cfg_.block_size);
}

int32_t PagedKVCache::refcount(int32_t block) const {
  TD_CHECK(block >= 0 && block < cfg_.n_blocks);
  return refcount_[size_t(block)];
}

void PagedKVCache::check_in_use(int32_t block) const {
  if (block < 0 || block >= cfg_.n_blocks || refcount_[size_t(block)] <= 0)
    bad_input("paged KV cache: block {} is not in use (pool of {} blocks)", block, cfg_.n_blocks);
}

void PagedKVCache::retain(int32_t block) {
  check_in_use(block);
  ++refcount_[size_t(block)];
}

void PagedKVCache::release(int32_t block) {
  check_in_use(block);
  release_block(block);
}

PagedKVCache::SeqId PagedKVCache::create_sequence() {
  if (!free_seqs_.empty()) {
    const SeqId s = free_seqs_.back();
    free_seqs_.pop_back();
    Sequence& q = seqs_[size_t(s)];
    q.table.clear();  // keeps the reserved capacity
    q.size = 0;
    q.alive = true;
    return s;
  }
  if (seqs_.size() >= size_t(std::numeric_limits<SeqId>::max()))
    fail(ErrorKind::Resource, "paged KV cache: too many sequences");
  Sequence q;
  q.table.reserve(size_t(cfg_.n_blocks));
  q.alive = true;
  seqs_.push_back(std::move(q));
  return SeqId(seqs_.size() - 1);
}

PagedKVCache::SeqId PagedKVCache::fork(SeqId src, int64_t n) {
  const int64_t src_size = seq(src).size;
  if (n < 0 || n > src_size)
    bad_input("paged KV cache: fork of sequence {} at {} tokens, but it holds {}", src, n,
              src_size);
  const SeqId s = create_sequence();  // may move seqs_: look src up again below
  const Sequence& from = seq(src);
  Sequence& to = seq(s);
  const int64_t keep = ceil_div(n, cfg_.block_size);
  for (int64_t i = 0; i < keep; ++i) {
    BlockRef b = from.table[size_t(i)];
    ++refcount_[size_t(b.id)];
    to.table.push_back(b);
  }
  if (keep > 0) to.table.back().n = int32_t(n - (keep - 1) * cfg_.block_size);
  to.size = n;
  return s;
}

PagedKVCache::SeqId PagedKVCache::create_sequence_from(std::span<const int32_t> blocks) {
  if (int64_t(blocks.size()) > cfg_.n_blocks)
    bad_input("paged KV cache: a sequence of {} blocks in a pool of {}", blocks.size(),
              cfg_.n_blocks);
  for (int32_t b : blocks) check_in_use(b);
  const SeqId s = create_sequence();
  Sequence& q = seq(s);
  const int64_t bs = cfg_.block_size;
  for (int32_t b : blocks) {
    ++refcount_[size_t(b)];
    q.table.push_back(BlockRef{b, int32_t(bs), pos_.data() + size_t(b) * size_t(bs)});
  }
  q.size = int64_t(blocks.size()) * bs;
  return s;
}

void PagedKVCache::free_sequence(SeqId s) {
  Sequence& q = seq(s);
  for (const BlockRef& b : q.table) release_block(b.id);
  q.table.clear();
  q.size = 0;
  q.alive = false;
  free_seqs_.push_back(s);
}

void PagedKVCache::truncate(SeqId s, int64_t n) {
  Sequence& q = seq(s);
  if (n < 0 || n > q.size)
    bad_input("paged KV cache: truncate of sequence {} to {} tokens, but it holds {}", s, n,
              q.size);
  const size_t keep = size_t(ceil_div(n, cfg_.block_size));
  for (size_t i = keep; i < q.table.size(); ++i) release_block(q.table[i].id);
  q.table.resize(keep);  // shrinks: no allocation
  if (keep > 0) q.table.back().n = int32_t(n - int64_t(keep - 1) * cfg_.block_size);
  q.size = n;
}

int64_t PagedKVCache::append(SeqId s, int64_t m, const int32_t* pos) {
  Sequence& q = seq(s);
  if (m < 0) bad_input("paged KV cache: append of {} tokens", m);
  const int64_t bs = cfg_.block_size;
  const int64_t start = q.size;
  if (m == 0) return start;

  const bool partial = !q.table.empty() && q.table.back().n < bs;
  const bool cow = partial && refcount_[size_t(q.table.back().id)] > 1;
  const int64_t room = partial ? bs - q.table.back().n : 0;
  const int64_t fresh = m > room ? ceil_div(m - room, bs) : 0;
  const int64_t needed = fresh + (cow ? 1 : 0);
  if (needed > int64_t(free_.size()))
    fail(ErrorKind::Resource,
         "paged KV cache exhausted: sequence {} needs {} blocks for {} more tokens, {} of {} "
         "blocks available",
         s, needed, m, free_.size(), cfg_.n_blocks);
  if (cow) copy_on_write(q);

  int64_t done = 0;
  while (done < m) {
    if (q.table.empty() || q.table.back().n == bs) {
      const int32_t b = take_block();
      q.table.push_back(BlockRef{b, 0, pos_.data() + size_t(b) * size_t(bs)});
    }
    BlockRef& tail = q.table.back();
    const int64_t take = std::min<int64_t>(m - done, bs - tail.n);
    int32_t* dst = pos_.data() + size_t(tail.id) * size_t(bs) + size_t(tail.n);
    if (pos != nullptr) {
      std::memcpy(dst, pos + done, size_t(take) * sizeof(int32_t));
    } else {
      for (int64_t i = 0; i < take; ++i) dst[i] = int32_t(start + done + i);
    }
    tail.n += int32_t(take);
    done += take;
  }
  q.size += m;
  return start;
}

// ---- blocks ----

int32_t PagedKVCache::take_block() {
  TD_CHECK(!free_.empty());
  const int32_t b = free_.back();
  free_.pop_back();
  TD_CHECK(refcount_[size_t(b)] == 0);
  refcount_[size_t(b)] = 1;
  return b;
}

void PagedKVCache::release_block(int32_t block) {
  int32_t& rc = refcount_[size_t(block)];
  TD_CHECK(rc > 0);
  if (--rc == 0) free_.push_back(block);  // capacity n_blocks: never reallocates
}

void PagedKVCache::copy_on_write(Sequence& q) {
  BlockRef& tail = q.table.back();
  const int32_t old = tail.id;
  const int32_t fresh = take_block();
  const size_t used = size_t(tail.n) * row_bytes_;
  for (int64_t layer = 0; layer < cfg_.n_layer; ++layer)
    for (int kv = 0; kv < 2; ++kv) std::memcpy(chunk(layer, kv, fresh), chunk(layer, kv, old), used);
  const size_t bs = size_t(cfg_.block_size);
  int32_t* dst = pos_.data() + size_t(fresh) * bs;
  std::memcpy(dst, pos_.data() + size_t(old) * bs, size_t(tail.n) * sizeof(int32_t));
  tail.id = fresh;
  tail.pos = dst;
  release_block(old);
}

// ---- rows ----

void PagedKVCache::check_layer(int64_t layer) const {
  TD_CHECK(layer >= 0 && layer < cfg_.n_layer);
}

const std::byte* PagedKVCache::row_ptr(int64_t layer, int kv, SeqId s, int64_t t) const {
  check_layer(layer);
  const Sequence& q = seq(s);
  TD_CHECK(t >= 0 && t < q.size);
  const BlockRef& b = q.table[size_t(t / cfg_.block_size)];
  return chunk(layer, kv, b.id) + size_t(t % cfg_.block_size) * row_bytes_;
}

float* PagedKVCache::mutable_row(int64_t layer, int kv, SeqId s, int64_t t) {
  TD_CHECK(cfg_.storage == DType::F32);
  const std::byte* p = row_ptr(layer, kv, s, t);
  TD_CHECK(refcount_[size_t(seq(s).table[size_t(t / cfg_.block_size)].id)] == 1);
  return reinterpret_cast<float*>(const_cast<std::byte*>(p));
}

const float* PagedKVCache::f32_row(int64_t layer, int kv, SeqId s, int64_t t) const {
  TD_CHECK(cfg_.storage == DType::F32);
  return reinterpret_cast<const float*>(row_ptr(layer, kv, s, t));
}

const float* PagedKVCache::f32_rows(int64_t layer, int kv, int32_t block) const {
  TD_CHECK(cfg_.storage == DType::F32);
  check_layer(layer);
  TD_CHECK(block >= 0 && block < cfg_.n_blocks);
  return reinterpret_cast<const float*>(chunk(layer, kv, block));
}

void PagedKVCache::write(int64_t layer, int kv, SeqId s, int64_t t, const float* row) {
  const std::byte* p = row_ptr(layer, kv, s, t);
  TD_CHECK(refcount_[size_t(seq(s).table[size_t(t / cfg_.block_size)].id)] == 1);
  auto* dst = const_cast<std::byte*>(p);
  if (cfg_.storage == DType::F32)
    std::memcpy(dst, row, row_bytes_);
  else
    quantize_row(cfg_.storage, row, dst, cfg_.kv_dim);
}

void PagedKVCache::read(int64_t layer, int kv, SeqId s, int64_t t, float* out) const {
  const std::byte* p = row_ptr(layer, kv, s, t);
  if (cfg_.storage == DType::F32)
    std::memcpy(out, p, row_bytes_);
  else
    dequantize_row(cfg_.storage, p, out, cfg_.kv_dim);
}

void PagedKVCache::read_block(int64_t layer, int kv, const BlockRef& b, float* out) const {
  check_layer(layer);
  TD_CHECK(b.id >= 0 && b.id < cfg_.n_blocks && b.n >= 0 && b.n <= cfg_.block_size);
  const std::byte* src = chunk(layer, kv, b.id);
  if (cfg_.storage == DType::F32) {
    std::memcpy(out, src, size_t(b.n) * row_bytes_);
    return;
  }
  for (int32_t r = 0; r < b.n; ++r)
    dequantize_row(cfg_.storage, src + size_t(r) * row_bytes_, out + size_t(r) * size_t(cfg_.kv_dim),
                   cfg_.kv_dim);
}

void PagedKVCache::read_k_block(int64_t layer, const BlockRef& b, float* out) const {
  read_block(layer, 0, b, out);
}

void PagedKVCache::read_v_block(int64_t layer, const BlockRef& b, float* out) const {
  read_block(layer, 1, b, out);
}

PagedKVStats PagedKVCache::stats() const {
  PagedKVStats st;
  st.blocks_total = cfg_.n_blocks;
  st.blocks_free = int64_t(free_.size());
  st.blocks_used = st.blocks_total - st.blocks_free;
  for (int32_t rc : refcount_) st.blocks_shared += rc > 1 ? 1 : 0;
  for (const Sequence& q : seqs_) {
    if (!q.alive) continue;
    ++st.sequences;
    st.tokens += q.size;
  }
  st.block_bytes = block_stride_ + size_t(cfg_.block_size) * sizeof(int32_t);
  st.bytes_total = size_t(st.blocks_total) * st.block_bytes;
  st.bytes_used = size_t(st.blocks_used) * st.block_bytes;
  return st;
}

}  // namespace tandem
