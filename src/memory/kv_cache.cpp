#include "tandem/memory/kv_cache.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "tandem/core/error.hpp"
#include "tandem/core/quant_rows.hpp"

namespace tandem {

namespace {

PagedKVConfig pool_config(int64_t n_layer, int64_t tokens, int64_t kv_dim, int64_t page,
                          DType type) {
  PagedKVConfig cfg;
  cfg.n_layer = n_layer;
  cfg.kv_dim = kv_dim;
  cfg.block_size = page;
  cfg.n_blocks = std::max<int64_t>((tokens + page - 1) / page, 1);
  cfg.storage = type;
  return cfg;
}

}  // namespace

std::shared_ptr<PagedKVCache> make_kv_pool(int64_t n_layer, int64_t tokens, int64_t kv_dim,
                                           const KVCacheOptions& opt) {
  TD_CHECK(n_layer > 0 && kv_dim > 0);
  if (tokens <= 0) bad_input("KV pool: size must be > 0 tokens (got {})", tokens);
  if (opt.page_tokens <= 0)
    bad_input("KV pool: a pool shared by sequences needs pages of > 0 tokens (got {})",
              opt.page_tokens);
  return std::make_shared<PagedKVCache>(
      pool_config(n_layer, tokens, kv_dim, opt.page_tokens, opt.type));
}

KVCache::KVCache(int64_t n_layer, int64_t capacity, int64_t kv_dim, const KVCacheOptions& opt)
    : n_layer_(n_layer), capacity_(capacity), kv_dim_(kv_dim), type_(opt.type) {
  TD_CHECK(n_layer > 0 && capacity >= 0 && kv_dim > 0);
  if (opt.page_tokens < 0) bad_input("KV cache: page size must be >= 0 tokens (got {})", opt.page_tokens);
  if (opt.pool_tokens < 0) bad_input("KV cache: pool size must be >= 0 tokens (got {})", opt.pool_tokens);
  const int64_t pool_tokens = std::max(opt.pool_tokens, capacity);
  page_ = opt.page_tokens > 0 ? opt.page_tokens : std::max<int64_t>(pool_tokens, 1);
  contiguous_ = opt.page_tokens == 0 && opt.pool_tokens <= capacity && type_ == DType::F32;
  pool_ = std::make_shared<PagedKVCache>(pool_config(n_layer, pool_tokens, kv_dim, page_, type_));
  seq_ = pool_->create_sequence();
}

KVCache::KVCache(std::shared_ptr<PagedKVCache> pool, int64_t capacity) : pool_(std::move(pool)) {
  TD_CHECK(pool_);
  const int64_t pool_tokens = pool_->n_blocks() * pool_->block_size();
  if (capacity < 0) bad_input("KV cache: capacity must be >= 0 tokens (got {})", capacity);
  n_layer_ = pool_->n_layer();
  capacity_ = capacity > 0 ? capacity : pool_tokens;
  kv_dim_ = pool_->kv_dim();
  page_ = pool_->block_size();
  type_ = pool_->storage();
  seq_ = pool_->create_sequence();
}

KVCache::KVCache(std::shared_ptr<PagedKVCache> pool, int64_t capacity,
                 std::span<const int32_t> blocks)
    : KVCache(std::move(pool), capacity) {
  const int64_t tokens = int64_t(blocks.size()) * page_;
  if (tokens > capacity_)
    bad_input("KV cache: {} pages hold {} tokens, over the capacity {}", blocks.size(), tokens,
              capacity_);
  // Replace the empty sequence made above; on a throw the empty one is freed by release().
  const PagedKVCache::SeqId s = pool_->create_sequence_from(blocks);
  pool_->free_sequence(seq_);
  seq_ = s;
}

std::span<const BlockRef> KVCache::blocks() const {
  TD_CHECK(pool_);
  return pool_->blocks(seq_);
}

KVCache::KVCache(std::shared_ptr<PagedKVCache> pool, PagedKVCache::SeqId seq, const KVCache& like)
    : pool_(std::move(pool)),
      seq_(seq),
      n_layer_(like.n_layer_),
      capacity_(like.capacity_),
      kv_dim_(like.kv_dim_),
      page_(like.page_),
      type_(like.type_),
      contiguous_(false) {}

KVCache::KVCache(KVCache&& o) noexcept { *this = std::move(o); }

KVCache& KVCache::operator=(KVCache&& o) noexcept {
  if (this == &o) return *this;
  release();
  pool_ = std::move(o.pool_);
  seq_ = std::exchange(o.seq_, -1);
  n_layer_ = o.n_layer_;
  capacity_ = o.capacity_;
  kv_dim_ = o.kv_dim_;
  page_ = o.page_;
  type_ = o.type_;
  contiguous_ = o.contiguous_;
  pages_ = std::move(o.pages_);
  return *this;
}

KVCache::~KVCache() { release(); }

void KVCache::release() {
  if (pool_ && seq_ >= 0 && pool_->alive(seq_)) pool_->free_sequence(seq_);
  pool_.reset();
  seq_ = -1;
}

int64_t KVCache::append(int64_t m, const int32_t* pos) {
  TD_CHECK(pool_);
  if (m < 0 || size() + m > capacity_)
    fail(ErrorKind::Resource, "KV cache full: {} tokens stored, {} more requested, capacity {}",
         size(), m, capacity_);
  return pool_->append(seq_, m, pos);
}

void KVCache::truncate(int64_t n) {
  TD_CHECK(pool_ && n >= 0 && n <= size());
  pool_->truncate(seq_, n);
}

void KVCache::write(int64_t layer, int64_t slot, int64_t count, const float* k, const float* v) {
  TD_CHECK(pool_ && slot >= 0 && count >= 0 && slot + count <= size());
  if (type_ != DType::F32) {
    for (int64_t t = 0; t < count; ++t) {
      pool_->write_k(layer, seq_, slot + t, k + t * kv_dim_);
      pool_->write_v(layer, seq_, slot + t, v + t * kv_dim_);
    }
    return;
  }
  // Rows within a page are consecutive: one copy per page.
  for (int64_t t = 0; t < count;) {
    const int64_t run = std::min(count - t, page_ - (slot + t) % page_);
    const size_t n = size_t(run * kv_dim_) * sizeof(float);
    std::memcpy(pool_->k(layer, seq_, slot + t), k + t * kv_dim_, n);
    std::memcpy(pool_->v(layer, seq_, slot + t), v + t * kv_dim_, n);
    t += run;
  }
}

void KVCache::read(int64_t layer, int64_t first, int64_t count, float* k, float* v) const {
  TD_CHECK(pool_ && first >= 0 && count >= 0 && first + count <= size());
  if (count == 0) return;
  const auto table = pool_->blocks(seq_);
  // Page by page: f32 rows are copied in place; quantized pages are dequantized whole into
  // row_buf_ (one page) and their rows copied from there.
  if (type_ != DType::F32) row_buf_.resize(size_t(page_ * kv_dim_));
  for (int64_t t = first; t < first + count;) {
    const BlockRef& b = table[size_t(t / page_)];
    const int64_t in_page = t % page_, run = std::min(first + count - t, b.n - in_page);
    const size_t off = size_t((t - first) * kv_dim_), n = size_t(run * kv_dim_);
    if (type_ == DType::F32) {
      std::memcpy(k + off, pool_->k_rows(layer, b.id) + in_page * kv_dim_, n * sizeof(float));
      std::memcpy(v + off, pool_->v_rows(layer, b.id) + in_page * kv_dim_, n * sizeof(float));
    } else {
      pool_->read_k_block(layer, b, row_buf_.data());
      std::memcpy(k + off, row_buf_.data() + in_page * kv_dim_, n * sizeof(float));
      pool_->read_v_block(layer, b, row_buf_.data());
      std::memcpy(v + off, row_buf_.data() + in_page * kv_dim_, n * sizeof(float));
    }
    t += run;
  }
}

void KVCache::read_positions(int64_t first, int64_t count, int32_t* out) const {
  TD_CHECK(pool_ && first >= 0 && count >= 0 && first + count <= size());
  const auto table = pool_->blocks(seq_);
  for (int64_t t = first; t < first + count;) {
    const BlockRef& b = table[size_t(t / page_)];
    const int64_t in_page = t % page_, run = std::min(first + count - t, b.n - in_page);
    std::memcpy(out + (t - first), b.pos + in_page, size_t(run) * sizeof(int32_t));
    t += run;
  }
}

void KVCache::round_trip(const float* in, float* out, int64_t rows) const {
  if (type_ == DType::F32) {
    std::memcpy(out, in, size_t(rows * kv_dim_) * sizeof(float));
    return;
  }
  std::vector<std::byte> row(row_bytes(type_, kv_dim_));
  for (int64_t r = 0; r < rows; ++r) {
    quantize_row(type_, in + r * kv_dim_, row.data(), kv_dim_);
    dequantize_row(type_, row.data(), out + r * kv_dim_, kv_dim_);
  }
}

const float* KVCache::k(int64_t layer, int64_t slot) const {
  TD_CHECK(contiguous_ && slot >= 0 && slot <= capacity_);
  return pool_->k_rows(layer, 0) + slot * kv_dim_;
}

const float* KVCache::v(int64_t layer, int64_t slot) const {
  TD_CHECK(contiguous_ && slot >= 0 && slot <= capacity_);
  return pool_->v_rows(layer, 0) + slot * kv_dim_;
}

const int32_t* KVCache::positions() const {
  TD_CHECK(contiguous_);
  return pool_->block_positions(0);
}

KvPages KVCache::pages(int64_t layer) const {
  TD_CHECK(pool_ && layer >= 0 && layer < n_layer_);
  pages_.clear();
  for (const BlockRef& b : pool_->blocks(seq_))
    pages_.push_back({pool_->k_data(layer, b.id), pool_->v_data(layer, b.id), b.pos});
  KvPages p;
  p.tokens = page_;
  p.page = pages_.data();
  p.type = type_;
  p.row_bytes = pool_->row_bytes();
  return p;
}

KVCache KVCache::fork(int64_t n) const {
  TD_CHECK(pool_);
  if (n < 0 || n > size()) bad_input("KV cache: fork at {} tokens, but the cache holds {}", n, size());
  return KVCache(pool_, pool_->fork(seq_, n), *this);
}

size_t KVCache::page_bytes() const {
  return pool_ ? size_t(pool_->block_size()) * pool_->row_bytes() * 2 * size_t(n_layer_) : 0;
}

size_t KVCache::bytes() const { return pool_ ? size_t(pool_->n_blocks()) * page_bytes() : 0; }

size_t KVCache::used_bytes() const {
  return pool_ ? size_t(pool_->n_blocks() - pool_->free_blocks()) * page_bytes() : 0;
}

PagedKVStats KVCache::stats() const { return pool_ ? pool_->stats() : PagedKVStats{}; }

}  // namespace tandem
