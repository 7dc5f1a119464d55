// Property test: many random operations (create, append + write, fork, truncate, free)
// on a paged KV cache and on a plain reference model (a vector of tokens per sequence);
// after every operation the contents, positions and block accounting must agree.
#include <gtest/gtest.h>

#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/core/quant_rows.hpp"
#include "tandem/memory/paged_kv_cache.hpp"

using namespace tandem;

namespace {

struct RefToken {
  int32_t pos = 0;
  std::vector<float> rows;  // [layer][K|V][kv_dim], as stored (Q8_0: after a round trip)
};
using RefModel = std::map<PagedKVCache::SeqId, std::vector<RefToken>>;

class Harness {
 public:
  Harness(DType storage, uint32_t seed) : rng_(seed) {
    cfg_.n_layer = 2;
    cfg_.kv_dim = storage == DType::Q8_0 ? 64 : 6;
    cfg_.block_size = 4;
    cfg_.n_blocks = 40;
    cfg_.storage = storage;
    cache_ = std::make_unique<PagedKVCache>(cfg_);
  }

  void step() {
    const int op = std::uniform_int_distribution<int>(0, 99)(rng_);
    if (ref_.empty() || op < 8) return create();
    auto it = ref_.begin();
    std::advance(it, std::uniform_int_distribution<size_t>(0, ref_.size() - 1)(rng_));
    const auto s = it->first;
    if (op < 50) return append(s);
    if (op < 65) return fork(s);
    if (op < 85) return truncate(s);
    free_sequence(s);
  }

  void check() const {
    const PagedKVCache& c = *cache_;
    const int64_t bs = cfg_.block_size, kv = cfg_.kv_dim;
    std::map<int32_t, int32_t> refs;
    int64_t tokens = 0;
    std::vector<float> row(static_cast<size_t>(kv));
    for (const auto& [s, toks] : ref_) {
      ASSERT_TRUE(c.alive(s));
      ASSERT_EQ(c.size(s), int64_t(toks.size()));
      tokens += int64_t(toks.size());
      const auto table = c.blocks(s);
      ASSERT_EQ(int64_t(table.size()), (int64_t(toks.size()) + bs - 1) / bs);
      std::set<int32_t> mine;
      int64_t t = 0;
      for (size_t i = 0; i < table.size(); ++i) {
        const BlockRef& b = table[i];
        ASSERT_TRUE(mine.insert(b.id).second) << "block twice in one table";
        ++refs[b.id];
        ASSERT_EQ(b.n, i + 1 < table.size() ? bs : int64_t(toks.size()) - t);
        for (int32_t r = 0; r < b.n; ++r, ++t) ASSERT_EQ(b.pos[r], toks[size_t(t)].pos);
      }
      for (int64_t tt = 0; tt < int64_t(toks.size()); ++tt)
        for (int64_t l = 0; l < cfg_.n_layer; ++l)
          for (int k = 0; k < 2; ++k) {
            k == 0 ? c.read_k(l, s, tt, row.data()) : c.read_v(l, s, tt, row.data());
            const float* want = toks[size_t(tt)].rows.data() + size_t((l * 2 + k) * kv);
            for (int64_t e = 0; e < kv; ++e)
              ASSERT_EQ(row[size_t(e)], want[e]) << "seq " << s << " token " << tt;
          }
    }
    int64_t shared = 0;
    for (int32_t b = 0; b < cfg_.n_blocks; ++b) {
      const auto it = refs.find(b);
      ASSERT_EQ(c.refcount(b), it == refs.end() ? 0 : it->second) << "block " << b;
      shared += c.refcount(b) > 1;
    }
    const PagedKVStats st = c.stats();
    ASSERT_EQ(st.blocks_used, int64_t(refs.size()));
    ASSERT_EQ(st.blocks_free, cfg_.n_blocks - int64_t(refs.size()));
    ASSERT_EQ(c.free_blocks(), st.blocks_free);
    ASSERT_EQ(st.blocks_shared, shared);
    ASSERT_EQ(st.sequences, int64_t(ref_.size()));
    ASSERT_EQ(st.tokens, tokens);
  }

  int64_t appends_ok = 0, appends_refused = 0, forks = 0, cows = 0;

 private:
  void create() { ref_[cache_->create_sequence()]; }

  void append(PagedKVCache::SeqId s) {
    auto& toks = ref_[s];
    const int64_t m = std::uniform_int_distribution<int64_t>(1, 9)(rng_);
    const int64_t bs = cfg_.block_size, n = int64_t(toks.size());
    // The blocks the append needs, from the reference: fresh blocks past the tail's free
    // rows, plus one for a copy of a shared partial tail.
    const bool partial = n % bs != 0;
    const bool cow = partial && cache_->refcount(cache_->blocks(s).back().id) > 1;
    const int64_t room = partial ? bs - n % bs : 0;
    const int64_t need = (m > room ? (m - room + bs - 1) / bs : 0) + (cow ? 1 : 0);
    std::vector<int32_t> pos(static_cast<size_t>(m));
    for (int32_t& p : pos) p = std::uniform_int_distribution<int32_t>(-1000, 100000)(rng_);
    if (need > cache_->free_blocks()) {
      try {
        cache_->append(s, m, pos.data());
        FAIL() << "append of " << m << " needing " << need << " blocks succeeded";
      } catch (const Error& e) {
        ASSERT_EQ(e.kind(), ErrorKind::Resource);
      }
      ++appends_refused;
      return;
    }
    ASSERT_EQ(cache_->append(s, m, pos.data()), n);
    ++appends_ok;
    cows += cow;
    const int64_t kv = cfg_.kv_dim;
    std::uniform_real_distribution<float> u(-3.f, 3.f);
    std::vector<float> raw(static_cast<size_t>(kv)), stored(static_cast<size_t>(kv));
    std::vector<uint8_t> q(row_bytes(DType::Q8_0, 64));
    for (int64_t i = 0; i < m; ++i) {
      RefToken tok;
      tok.pos = pos[size_t(i)];
      for (int64_t l = 0; l < cfg_.n_layer; ++l)
        for (int k = 0; k < 2; ++k) {
          for (float& x : raw) x = u(rng_);
          k == 0 ? cache_->write_k(l, s, n + i, raw.data()) : cache_->write_v(l, s, n + i, raw.data());
          stored = raw;
          if (cfg_.storage == DType::Q8_0) {
            quantize_row(DType::Q8_0, raw.data(), q.data(), kv);
            dequantize_row(DType::Q8_0, q.data(), stored.data(), kv);
          }
          tok.rows.insert(tok.rows.end(), stored.begin(), stored.end());
        }
      toks.push_back(std::move(tok));
    }
  }

  void fork(PagedKVCache::SeqId s) {
    const auto& toks = ref_[s];
    const int64_t n = std::uniform_int_distribution<int64_t>(0, int64_t(toks.size()))(rng_);
    const auto f = cache_->fork(s, n);
    ASSERT_EQ(ref_.count(f), 0u);
    ref_[f] = std::vector<RefToken>(ref_[s].begin(), ref_[s].begin() + n);
    ++forks;
  }

  void truncate(PagedKVCache::SeqId s) {
    auto& toks = ref_[s];
    const int64_t n = std::uniform_int_distribution<int64_t>(0, int64_t(toks.size()))(rng_);
    cache_->truncate(s, n);
    toks.resize(size_t(n));
  }

  void free_sequence(PagedKVCache::SeqId s) {
    cache_->free_sequence(s);
    ref_.erase(s);
  }

  PagedKVConfig cfg_;
  std::mt19937 rng_;
  std::unique_ptr<PagedKVCache> cache_;
  RefModel ref_;
};

void run(DType storage) {
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    Harness h(storage, seed);
    for (int i = 0; i < 1500; ++i) {
      h.step();
      ASSERT_NO_FATAL_FAILURE(h.check()) << "seed " << seed << " step " << i;
      if (::testing::Test::HasFatalFailure()) return;
    }
    // Every path was exercised.
    EXPECT_GT(h.appends_ok, 100);
    EXPECT_GT(h.appends_refused, 0);
    EXPECT_GT(h.forks, 50);
    EXPECT_GT(h.cows, 10);
  }
}

}  // namespace

TEST(PagedKVProperty, RandomOperationsMatchTheReferenceF32) { run(DType::F32); }
TEST(PagedKVProperty, RandomOperationsMatchTheReferenceQ8) { run(DType::Q8_0); }
