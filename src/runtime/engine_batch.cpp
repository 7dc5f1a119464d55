// Engine::forward_batch: continuous batching on one rank. The new rows of several
// sequences run as one graph step (every matmul over all rows at once); each layer's
// attention runs per sequence, against its own cache, through the single-rank strategy.
//
// Row order of a step: the graph computes logits for its last rows only ([out_from, m)),
// so the last row of every item that asks for logits goes to the tail of the step, the
// other rows stay in item order in front of it. Attention needs an item's rows in one
// run: items without logits and single-row items are; of the multi-row items with
// logits, the one placed just before the tail keeps its last row first in the tail, so
// it is too, and the others (rare: a step where two prompts finish) are gathered into a
// scratch run for the attention call and their outputs scattered back.
#include <algorithm>
#include <atomic>
#include <cstring>

#include "tandem/core/error.hpp"
#include "tandem/runtime/engine.hpp"

namespace tandem {

// Rows [from, from + n) of items[item] in one step.
struct Engine::BatchPiece {
  size_t item = 0;
  int64_t from = 0, n = 0;
  bool logits = false;  // its last row needs logits
  int64_t body = 0;     // step row of its first row
  int64_t tail = -1;    // step row of its last row when that needs logits (in the tail)
  int64_t slot = -1;    // cache slot of its first row
  int64_t body_rows() const { return n - (logits ? 1 : 0); }
  bool contiguous() const { return tail < 0 || tail == body + body_rows(); }
};

void Engine::forward_batch(std::span<const BatchItem> items) {
  if (attn_ != &local_)
    bad_input("batched forward runs on one rank, but the attention strategy '{}' is set",
              attn_->name());
  const int64_t V = model_.hparams().n_vocab;
  std::vector<const KVCache*> caches;
  for (const BatchItem& it : items) {
    TD_CHECK(it.cache != nullptr && it.ids.size() == it.pos.size());
    if (it.ids.empty() && it.logits)
      bad_input("batched forward: an item asks for logits but has no tokens");
    for (int32_t id : it.ids)
      if (id < 0 || id >= V) bad_input("token id {} is out of range [0, {})", id, V);
    caches.push_back(it.cache);
  }
  std::sort(caches.begin(), caches.end());
  if (std::adjacent_find(caches.begin(), caches.end()) != caches.end())
    bad_input("batched forward: two items of one batch use the same KV cache");
  // Steps of at most chunk_ rows, filled in item order; an item at a step's end is split.
  std::vector<BatchPiece> step;
  int64_t rows = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const int64_t len = int64_t(items[i].ids.size());
    for (int64_t off = 0; off < len;) {
      const int64_t take = std::min(len - off, chunk_ - rows);
      step.push_back({.item = i, .from = off, .n = take,
                      .logits = items[i].logits != nullptr && off + take == len});
      off += take;
      rows += take;
      if (rows == chunk_) {
        forward_batch_step(items, step);
        step.clear();
        rows = 0;
      }
    }
  }
  if (!step.empty()) forward_batch_step(items, step);
}

void Engine::forward_batch_step(std::span<const BatchItem> items, std::vector<BatchPiece>& pieces) {
  const auto& h = model_.hparams();
  const int64_t V = h.n_vocab, Qd = h.q_dim(), KVd = h.kv_dim();
  // Pieces without logits, then multi-row pieces with logits, then single rows with logits.
  auto with_logits = std::stable_partition(pieces.begin(), pieces.end(),
                                           [](const BatchPiece& p) { return !p.logits; });
  auto singles = std::stable_partition(with_logits, pieces.end(),
                                       [](const BatchPiece& p) { return p.n > 1; });
  int64_t m = 0;
  for (BatchPiece& p : pieces) {
    p.body = m;
    m += p.body_rows();
  }
  const int64_t out_from = m;
  // The tail: the last multi-row piece's last row first, then the others' in order.
  if (singles != with_logits) std::prev(singles)->tail = m++;
  for (auto p = with_logits; p != pieces.end(); ++p)
    if (p->tail < 0) p->tail = m++;
  for (auto p = singles; p != pieces.end(); ++p) p->body = p->tail;
  const int64_t n_out = m - out_from;

  batch_ids_.resize(size_t(m));
  batch_pos_.resize(size_t(m));
  for (const BatchPiece& p : pieces) {
    const BatchItem& it = items[p.item];
    auto put = [&](int64_t row, int64_t i) {
      batch_ids_[size_t(row)] = it.ids[size_t(p.from + i)];
      batch_pos_[size_t(row)] = it.pos[size_t(p.from + i)];
    };
    for (int64_t i = 0; i < p.body_rows(); ++i) put(p.body + i, i);
    if (p.logits) put(p.tail, p.n - 1);
  }

  // Cache slots for every piece; if one cache cannot take its rows, the others give
  // theirs back (a copy-on-write of a shared partial page may stay, with equal rows).
  size_t done = 0;
  try {
    for (; done < pieces.size(); ++done) {
      BatchPiece& p = pieces[done];
      p.slot = local_.begin_step(*items[p.item].cache, p.n, items[p.item].pos.data() + p.from);
    }
  } catch (...) {
    for (size_t i = 0; i < done; ++i) items[pieces[i].item].cache->truncate(pieces[i].slot);
    throw;
  }

  // One piece's attention through `attn`: in place when its rows are one run, else
  // through the gather scratch (callers run these one at a time).
  auto attend_piece = [&](parallel::SequenceAttention& attn, const BatchPiece& p, int layer,
                          const float* q, const float* k, const float* v, float* out) {
    KVCache& cache = *items[p.item].cache;
    const int32_t* pos = items[p.item].pos.data() + p.from;
    if (p.contiguous()) {
      attn.attend(cache, p.slot, attn_step(layer, p.n, q + p.body * Qd, k + p.body * KVd,
                                           v + p.body * KVd, pos, out + p.body * Qd));
      return;
    }
    const int64_t nb = p.body_rows();
    gather_.resize(size_t(p.n * (2 * Qd + 2 * KVd)));
    float* gq = gather_.data();
    float* gk = gq + p.n * Qd;
    float* gv = gk + p.n * KVd;
    float* go = gv + p.n * KVd;
    // Rows [body, body + nb) and the tail row of src (w values each) into dst, or back.
    auto gather = [&](const float* src, float* dst, int64_t w) {
      std::memcpy(dst, src + p.body * w, size_t(nb * w) * sizeof(float));
      std::memcpy(dst + nb * w, src + p.tail * w, size_t(w) * sizeof(float));
    };
    gather(q, gq, Qd);
    gather(k, gk, KVd);
    gather(v, gv, KVd);
    attn.attend(cache, p.slot, attn_step(layer, p.n, gq, gk, gv, pos, go));
    std::memcpy(out + p.body * Qd, go, size_t(nb * Qd) * sizeof(float));
    std::memcpy(out + p.tail * Qd, go + nb * Qd, size_t(Qd) * sizeof(float));
  };
  // One-row pieces (decode) have one query each: too few to share among the pool's
  // threads, so with two or more of them each thread takes whole pieces, attending on
  // its own (solo_: every thread in the pool at once, each on another cache); pieces of
  // several rows (prompt chunks) then run one at a time on the whole pool.
  one_row_.clear();
  for (const BatchPiece& p : pieces)
    if (p.n == 1) one_row_.push_back(&p);
  const bool spread = pool_.size() > 1 && one_row_.size() >= 2;
  solo_.set_kernel(local_.kernel());
  auto attend = [&](int layer, const float* q, const float* k, const float* v, float* out) {
    if (spread) {
      std::atomic<size_t> next{0};
      pool_.run([&](int, int) {
        for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < one_row_.size();)
          attend_piece(solo_, *one_row_[i], layer, q, k, v, out);
      });
    }
    for (const BatchPiece& p : pieces)
      if (!spread || p.n != 1) attend_piece(local_, p, layer, q, k, v, out);
  };
  batch_logits_.resize(size_t(n_out * V));
  run_step(batch_ids_.data(), batch_pos_.data(), m, out_from,
           n_out > 0 ? batch_logits_.data() : nullptr, attend);
  for (const BatchPiece& p : pieces)
    if (p.logits)
      std::memcpy(items[p.item].logits, batch_logits_.data() + (p.tail - out_from) * V,
                  size_t(V) * sizeof(float));
}

}  // namespace tandem
