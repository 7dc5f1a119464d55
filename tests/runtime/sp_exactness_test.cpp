// Sequence parallelism must not change the result: P-rank logits equal the 1-rank
// logits (in-process backend: P ranks as threads), for prefill and sharded decode.
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>
#include <numeric>
#include <random>

#include "support/test_paths.hpp"
#include "tandem/comm/in_process.hpp"
#include "tandem/model/synth.hpp"
#include "tandem/parallel/sharded_decode.hpp"
#include "tandem/runtime/sp.hpp"

using namespace tandem;

namespace {

struct Shape {
  int64_t H, G;
};

std::unique_ptr<Model> make_model(Shape s) {
  SynthSpec spec;
  spec.n_head = s.H;
  spec.n_head_kv = s.G;
  spec.n_embd = 8 * s.H;  // head dim 8
  spec.n_layer = 2;
  spec.n_ff = 48;
  spec.n_vocab = 96;
  spec.type = DType::F32;
  spec.seed = uint64_t(100 + s.H * 10 + s.G);
  const std::string path =
      test::temp_dir() + "/sp-h" + std::to_string(s.H) + "-g" + std::to_string(s.G) + ".gguf";
  write_synthetic_model(spec, path);
  return Model::load(path);
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(rng() % uint32_t(vocab));
  return ids;
}

// Max over rows of (max abs diff in the row / max abs value of the reference row).
double max_rel_diff(const float* a, const float* ref, int64_t rows, int64_t cols) {
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

Reference reference(const Model& m, const std::vector<int32_t>& ids, const std::vector<int32_t>& more) {
  const int64_t V = m.hparams().n_vocab, n = int64_t(ids.size());
  kernels::ThreadPool pool(1);
  Engine e(m, pool);
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

// Runs prefill (all logits) then decode of `more` under `scheme` on P in-process ranks;
// returns the worst relative diff against the reference (prefill, decode).
std::pair<double, double> run_sp(const Model& m, const std::vector<int32_t>& ids,
                                 const std::vector<int32_t>& more, int P, const std::string& scheme_name,
                                 const Reference& ref) {
  const int64_t V = m.hparams().n_vocab, n = int64_t(ids.size());
  std::mutex mu;
  double worst_prefill = 0, worst_decode = 0;
  comm::run_in_process(P, [&](comm::Communicator& comm) {
    const auto scheme = parallel::parse_scheme(scheme_name, comm.size());
    kernels::ThreadPool pool(1);
    Engine e(m, pool);
    KVCache cache = e.make_cache(
        sp_cache_capacity(n, int64_t(more.size()), comm.size(), comm.rank(), scheme));
    const auto part = sp_prefill(e, cache, comm, scheme, ids, LogitsWanted::All);
    const auto all = gather_logits(comm, part, n, V);
    const double dp = max_rel_diff(all.data(), ref.prefill.data(), n, V);
    parallel::ShardedDecode decode(e.attn_shape(), pool, comm);
    e.set_attention(&decode);
    std::vector<float> logits(static_cast<size_t>(V));
    double dd = 0;
    for (size_t i = 0; i < more.size(); ++i) {
      const int32_t p = int32_t(n + int64_t(i));
      e.forward(cache, std::span<const int32_t>(&more[i], 1), std::span<const int32_t>(&p, 1), 1,
                logits.data());
      dd = std::max(dd, max_rel_diff(logits.data(), ref.decode.data() + i * size_t(V), 1, V));
    }
    e.set_attention(nullptr);
    const std::lock_guard<std::mutex> lock(mu);
    worst_prefill = std::max(worst_prefill, dp);
    worst_decode = std::max(worst_decode, dd);
  });
  return {worst_prefill, worst_decode};
}

void check_scheme(const std::string& scheme, const std::vector<Shape>& shapes,
                  const std::vector<int64_t>& lengths, int max_p = 4) {
  for (const Shape s : shapes) {
    const auto m = make_model(s);
    for (int64_t n : lengths) {
      const auto ids = random_ids(n, m->hparams().n_vocab, uint32_t(n));
      const auto more = random_ids(32, m->hparams().n_vocab, uint32_t(n + 1));
      const Reference ref = reference(*m, ids, more);
      for (int P = 1; P <= max_p; ++P) {
        const auto [dp, dd] = run_sp(*m, ids, more, P, scheme, ref);
        EXPECT_LE(dp, 1e-4) << scheme << " H=" << s.H << " G=" << s.G << " N=" << n << " P=" << P;
        EXPECT_LE(dd, 1e-4) << scheme << " decode H=" << s.H << " G=" << s.G << " N=" << n
                            << " P=" << P;
      }
    }
  }
}

const std::vector<Shape> kShapes = {{4, 4}, {8, 2}, {6, 3}, {12, 4}};
// Primes, N < P, N < 2P (zigzag leaves ranks empty), uneven shards, a longer one.
const std::vector<int64_t> kLengths = {1, 2, 3, 5, 7, 13, 64, 101, 257, 1031};

}  // namespace

TEST(SpExactness, RingContiguous) { check_scheme("ring", kShapes, kLengths); }
TEST(SpExactness, RingZigzag) { check_scheme("zigzag", kShapes, kLengths); }
