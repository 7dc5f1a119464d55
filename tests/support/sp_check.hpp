#pragma once
// Runs of one model on P in-process ranks under a sequence-parallel scheme, against the
// same model on one rank (the tests of sequence parallelism share these).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "tandem/comm/in_process.hpp"
#include "tandem/parallel/sharded_decode.hpp"
#include "tandem/runtime/session.hpp"

namespace tandem::test {

inline std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(rng() % uint32_t(vocab));
  return ids;
}

// Max over rows of (max abs diff in the row / max abs value of the reference row).
inline double max_rel_diff(const float* a, const float* ref, int64_t rows, int64_t cols) {
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double diff = 0, scale = 1e-20;
    for (int64_t c = 0; c < cols; ++c) {
      diff = std::max(diff, double(std::fabs(a[r * cols + c] - ref[r * cols + c])));
      scale = std::max(scale, double(std::fabs(ref[r * cols + c])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

// 1-rank logits of every position (prefill) and of `decode` more tokens fed one by one.
struct Reference {
  std::vector<float> prefill;  // [N][V]
  std::vector<float> decode;   // [steps][V]
};

inline Reference reference(const Model& m, const std::vector<int32_t>& ids, const std::vector<int32_t>& more,
                    const EngineOptions& opt = {}) {
  const int64_t V = m.hparams().n_vocab, n = int64_t(ids.size());
  kernels::ThreadPool pool(1);
  Engine e(m, pool);
  e.set_options(opt);
  KVCache cache = e.make_cache(n + int64_t(more.size()));
  std::vector<int32_t> pos(ids.size());
  std::iota(pos.begin(), pos.end(), 0);
  Reference r;
  r.prefill.resize(size_t(n * V));
  e.forward(cache, ids, pos, n, r.prefill.data());
  r.decode.resize(more.size() * size_t(V));
  for (size_t i = 0; i < more.size(); ++i) {
    const int32_t p = int32_t(n + int64_t(i));
    e.forward(cache, std::span<const int32_t>(&more[i], 1), std::span<const int32_t>(&p, 1), 1,
              r.decode.data() + i * size_t(V));
  }
  return r;
}

// Decodes `more` (from position `start`) against the sharded cache; returns the worst
// relative diff against ref.decode, and the logits [steps][V] in `logits`.
inline double sharded_decode(Engine& e, KVCache& cache, comm::Communicator& comm,
                      const std::vector<int32_t>& more, int64_t start, const Reference& ref,
                      std::vector<float>& logits) {
  const int64_t V = e.model().hparams().n_vocab;
  parallel::ShardedDecode decode(e.attn_shape(), e.pool(), comm);
  e.set_attention(&decode);
  logits.assign(more.size() * size_t(V), 0.0f);
  double dd = 0;
  for (size_t i = 0; i < more.size(); ++i) {
    const int32_t p = int32_t(start + int64_t(i));
    float* row = logits.data() + i * size_t(V);
    e.forward(cache, std::span<const int32_t>(&more[i], 1), std::span<const int32_t>(&p, 1), 1,
              row);
    dd = std::max(dd, max_rel_diff(row, ref.decode.data() + i * size_t(V), 1, V));
  }
  e.set_attention(nullptr);
  return dd;
}

// Outcome of a P-rank run: the worst relative diffs against the reference over all
// ranks, and rank 0's logits (prefill [N][V] gathered, decode [steps][V]).
struct SpRun {
  double prefill = 0, decode = 0;
  Reference logits;
};

// Runs prefill (all logits) then decode of `more` under `scheme` on P in-process ranks
// (a Session per rank), with the engine options `opt` (KV cache layout, attention kernel).
inline SpRun run_sp(const std::shared_ptr<Model>& m, const std::vector<int32_t>& ids,
             const std::vector<int32_t>& more, int P, const std::string& scheme_name,
             const Reference& ref, const EngineOptions& opt = {},
             int64_t chunk = parallel::kAutoSpChunk, int64_t* steps = nullptr) {
  const int64_t V = m->hparams().n_vocab, n = int64_t(ids.size());
  std::mutex mu;
  SpRun run;
  comm::run_in_process(P, [&](comm::Communicator& comm) {
    SessionOptions so;
    so.scheme = scheme_name;
    so.engine = opt;
    so.sp_chunk = chunk;
    Session s(m, so, comm);
    auto all = s.gather_logits(s.prefill(ids, n, int64_t(more.size())));
    if (steps && comm.rank() == 0) *steps = s.engine().steps();
    // Rank 0 holds every row; the others none.
    const double dp = comm.rank() == 0 ? max_rel_diff(all.data(), ref.prefill.data(), n, V)
                                       : (all.empty() ? 0.0 : 1.0);
    std::vector<float> logits;
    const double dd = sharded_decode(s.engine(), s.cache(), comm, more, n, ref, logits);
    const std::lock_guard<std::mutex> lock(mu);
    run.prefill = std::max(run.prefill, dp);
    run.decode = std::max(run.decode, dd);
    if (comm.rank() == 0) run.logits = {std::move(all), std::move(logits)};
  });
  return run;
}

}  // namespace tandem::test
