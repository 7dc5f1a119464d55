// Sequence parallelism must not change the result: P-rank logits equal the 1-rank
// logits (in-process backend: P ranks as threads), for prefill under every scheme (ring,
// zigzag, ulysses, hybrid, pass-q, auto), for prefill onto caches that already hold a
// sequence (pass-q, ring, auto), and for sharded decode after them.
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>
#include <numeric>
#include <random>
#include <tuple>

#include "support/sp_check.hpp"
#include "support/test_paths.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/comm/in_process.hpp"
#include "tandem/kernels/attention_plain.hpp"
#include "tandem/model/synth.hpp"
#include "tandem/parallel/auto_attention.hpp"
#include "tandem/parallel/sharded_decode.hpp"
#include "tandem/runtime/session.hpp"

using namespace tandem;
using namespace tandem::test;

namespace {

struct Shape {
  int64_t H, G;
};

std::shared_ptr<Model> make_model(Shape s) {
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
  return load_model(path);
}

const std::vector<int> kAllP = {1, 2, 3, 4};

void check_scheme(const std::string& scheme, const std::vector<Shape>& shapes,
                  const std::vector<int64_t>& lengths, const std::vector<int>& ranks = kAllP) {
  for (const Shape s : shapes) {
    const auto m = make_model(s);
    for (int64_t n : lengths) {
      const auto ids = random_ids(n, m->hparams().n_vocab, uint32_t(n));
      const auto more = random_ids(32, m->hparams().n_vocab, uint32_t(n + 1));
      const Reference ref = reference(*m, ids, more);
      for (int P : ranks) {
        const SpRun r = run_sp(m, ids, more, P, scheme, ref);
        EXPECT_LE(r.prefill, 1e-4) << scheme << " H=" << s.H << " G=" << s.G << " N=" << n
                                   << " P=" << P;
        EXPECT_LE(r.decode, 1e-4) << scheme << " decode H=" << s.H << " G=" << s.G << " N=" << n
                                  << " P=" << P;
      }
    }
  }
}

// Two phases: n1 tokens prefilled with the ring, then n2 more (positions n1..) under
// `second` onto the filled caches (contiguous shards of the n2), then decode.
Reference reference_two_phase(const Model& m, const std::vector<int32_t>& ids1,
                              const std::vector<int32_t>& ids2, const std::vector<int32_t>& more) {
  std::vector<int32_t> all(ids1);
  all.insert(all.end(), ids2.begin(), ids2.end());
  Reference full = reference(m, all, more);
  const int64_t V = m.hparams().n_vocab;
  full.prefill.erase(full.prefill.begin(),
                     full.prefill.begin() + ptrdiff_t(ids1.size() * size_t(V)));
  return full;  // prefill: logits of the n2 tokens
}

// This rank's shard of ids (positions 0..N-1) prefilled under `scheme` onto `cache`,
// without logits.
void prefill_shard(Engine& e, KVCache& cache, comm::Communicator& comm,
                   const parallel::Scheme& scheme, const std::vector<int32_t>& ids) {
  const auto idx = parallel::shard_indices(int64_t(ids.size()), comm.size(), comm.rank(), scheme.placement);
  std::vector<int32_t> my_ids, my_pos;
  for (int64_t i : idx) {
    my_ids.push_back(ids[size_t(i)]);
    my_pos.push_back(int32_t(i));
  }
  auto attn = parallel::make_prefill_attention(scheme, e.attn_shape(), e.pool(), comm);
  e.set_attention(attn.get());
  e.forward(cache, my_ids, my_pos, 0, nullptr);
  e.set_attention(nullptr);
}

struct TwoPhaseRun {
  double prefill = 0, decode = 0;
  std::string chosen;  // auto: the strategy of the second phase
};

TwoPhaseRun run_two_phase(const Model& m, const std::vector<int32_t>& ids1,
                          const std::vector<int32_t>& ids2, const std::vector<int32_t>& more, int P,
                          const std::string& second, const Reference& ref) {
  const int64_t V = m.hparams().n_vocab, n1 = int64_t(ids1.size()), n2 = int64_t(ids2.size());
  std::mutex mu;
  TwoPhaseRun run;
  comm::run_in_process(P, [&](comm::Communicator& comm) {
    const int r = comm.rank();
    const auto ring = parallel::parse_scheme("ring", P);
    const auto scheme = parallel::parse_scheme(second, P);
    kernels::ThreadPool pool(1);
    Engine e(m, pool);
    const auto idx = parallel::shard_indices(n2, P, r, parallel::Placement::Contiguous);
    KVCache cache =
        e.make_cache(parallel::scheme_cache_capacity(ring, n1, 0, P, r) + int64_t(idx.size()) +
                     parallel::scheme_cache_capacity(ring, 0, n1 + n2 + int64_t(more.size()), P, r));
    prefill_shard(e, cache, comm, ring, ids1);
    PrefillOutput part;
    part.tokens = n2;
    part.indices = idx;
    std::vector<int32_t> my_ids, my_pos;
    for (int64_t i : idx) {
      my_ids.push_back(ids2[size_t(i)]);
      my_pos.push_back(int32_t(n1 + i));
    }
    part.logits.resize(idx.size() * size_t(V));
    auto attn = parallel::make_prefill_attention(scheme, e.attn_shape(), pool, comm);
    e.set_attention(attn.get());
    e.forward(cache, my_ids, my_pos, int64_t(idx.size()), part.logits.data());
    e.set_attention(nullptr);
    const auto all = gather_logits(comm, std::move(part), V);
    const double dp = r == 0 ? max_rel_diff(all.data(), ref.prefill.data(), n2, V)
                             : (all.empty() ? 0.0 : 1.0);
    std::vector<float> logits;
    const double dd = sharded_decode(e, cache, comm, more, n1 + n2, ref, logits);
    const auto* a = dynamic_cast<const parallel::AutoAttention*>(attn.get());
    const std::lock_guard<std::mutex> lock(mu);
    run.prefill = std::max(run.prefill, dp);
    run.decode = std::max(run.decode, dd);
    if (a && r == 0) run.chosen = std::string(a->chosen().name());
  });
  return run;
}

// Second phases of (n1, n2) tokens under `second` for every P; returns what auto chose
// (at P = 1) per case.
std::vector<std::string> check_two_phase(const std::string& second, Shape s,
                                         const std::vector<std::pair<int64_t, int64_t>>& cases) {
  const auto m = make_model(s);
  std::vector<std::string> chosen;
  for (const auto& [n1, n2] : cases) {
    const int64_t V = m->hparams().n_vocab;
    const auto ids1 = random_ids(n1, V, uint32_t(n1 * 7 + n2));
    const auto ids2 = random_ids(n2, V, uint32_t(n1 * 7 + n2 + 1));
    const auto more = random_ids(8, V, uint32_t(n1 * 7 + n2 + 2));
    const Reference ref = reference_two_phase(*m, ids1, ids2, more);
    for (int P : kAllP) {
      const TwoPhaseRun r = run_two_phase(*m, ids1, ids2, more, P, second, ref);
      EXPECT_LE(r.prefill, 1e-4) << second << " onto cache H=" << s.H << " G=" << s.G
                                 << " N1=" << n1 << " N2=" << n2 << " P=" << P;
      EXPECT_LE(r.decode, 1e-4) << second << " onto cache, decode H=" << s.H << " G=" << s.G
                                << " N1=" << n1 << " N2=" << n2 << " P=" << P;
      if (P == 1) chosen.push_back(r.chosen);
    }
  }
  return chosen;
}

const std::vector<Shape> kShapes = {{4, 4}, {8, 2}, {6, 3}, {12, 4}};
// Primes, N < P, N < 2P (zigzag leaves ranks empty), uneven shards, a longer one.
const std::vector<int64_t> kLengths = {1, 2, 3, 5, 7, 13, 64, 101, 257, 1031};

}  // namespace

TEST(SpExactness, RingContiguous) { check_scheme("ring", kShapes, kLengths); }
TEST(SpExactness, RingZigzag) { check_scheme("zigzag", kShapes, kLengths); }

TEST(SpExactness, Ulysses) {
  check_scheme("ulysses", kShapes, kLengths);
  // More ranks than heads: some ranks get no head (KV head replicated on the others).
  check_scheme("ulysses", {{2, 1}, {3, 1}}, {1, 5, 64});
}
TEST(SpExactness, Hybrid2x2) { check_scheme("hybrid:2x2", kShapes, kLengths, {4}); }
TEST(SpExactness, PassQ) { check_scheme("pass-q", kShapes, kLengths); }

// A chunked prefill (--sp-chunk): the sequence placed band by band (bands of chunk x P
// tokens), one forward step per band, equals one rank; schemes that cannot prefill onto
// caches (ulysses, hybrid) ignore the chunk and run one step.
TEST(SpExactness, ChunkedShards) {
  const std::vector<int64_t> lengths = {5, 13, 64, 257};
  for (const Shape s : {Shape{4, 4}, Shape{8, 2}}) {
    const auto m = make_model(s);
    for (int64_t n : lengths) {
      const auto ids = random_ids(n, m->hparams().n_vocab, uint32_t(n));
      const auto more = random_ids(8, m->hparams().n_vocab, uint32_t(n + 1));
      const Reference ref = reference(*m, ids, more);
      for (const std::string scheme : {"ring", "zigzag", "pass-q", "auto", "ulysses"})
        for (int P : {2, 3, 4})
          for (int64_t chunk : {1, 3, 16}) {
            SCOPED_TRACE(scheme + " H=" + std::to_string(s.H) + " N=" + std::to_string(n) +
                         " P=" + std::to_string(P) + " chunk=" + std::to_string(chunk));
            int64_t steps = 0;
            const SpRun r = run_sp(m, ids, more, P, scheme, ref, {}, chunk, &steps);
            EXPECT_LE(r.prefill, 1e-4);
            EXPECT_LE(r.decode, 1e-4);
            const int64_t bands = (n + chunk * P - 1) / (chunk * P);
            EXPECT_EQ(steps, scheme == "ulysses" ? 1 : bands);
          }
    }
  }
}

// hybrid:1x2 is the ring and hybrid:2x1 is Ulysses: same logits (P = 2).
TEST(SpExactness, HybridDegenerate) {
  for (const Shape s : {Shape{8, 2}, Shape{6, 3}}) {
    const auto m = make_model(s);
    for (int64_t n : {1, 7, 257}) {
      const auto ids = random_ids(n, m->hparams().n_vocab, uint32_t(n));
      const auto more = random_ids(4, m->hparams().n_vocab, uint32_t(n + 1));
      const Reference ref = reference(*m, ids, more);
      for (const auto& [hybrid, plain] : {std::pair<std::string, std::string>{"hybrid:1x2", "ring"},
                                          {"hybrid:2x1", "ulysses"}}) {
        const SpRun h = run_sp(m, ids, more, 2, hybrid, ref);
        const SpRun p = run_sp(m, ids, more, 2, plain, ref);
        EXPECT_LE(h.prefill, 1e-4) << hybrid << " N=" << n;
        EXPECT_LE(max_rel_diff(h.logits.prefill.data(), p.logits.prefill.data(), n, 96), 1e-6)
            << hybrid << " vs " << plain << " H=" << s.H << " G=" << s.G << " N=" << n;
        EXPECT_LE(max_rel_diff(h.logits.decode.data(), p.logits.decode.data(), 4, 96), 1e-6)
            << hybrid << " vs " << plain << " decode N=" << n;
      }
    }
  }
}

// Pass-Q (and the ring, which circulates whole caches) onto caches that already hold a
// ring-prefilled sequence.
TEST(SpExactness, PassQOntoCache) {
  const std::vector<std::pair<int64_t, int64_t>> cases = {
      {5, 1}, {3, 2}, {13, 3}, {101, 37}, {1000, 31}};
  for (const Shape s : kShapes) check_two_phase("pass-q", s, cases);
  check_two_phase("ring", Shape{8, 2}, {{5, 1}, {13, 3}, {101, 37}});
}

// Auto: pass-KV onto empty caches; onto filled ones, pass-Q iff n_new/(n_new+n_cached) < 2G/H.
TEST(SpExactness, Auto) {
  check_scheme("auto", kShapes, {1, 3, 13, 257});
  EXPECT_FALSE(parallel::prefer_pass_q(100, 0, 4, 4));
  EXPECT_TRUE(parallel::prefer_pass_q(1, 1000, 32, 8));
  EXPECT_FALSE(parallel::prefer_pass_q(500, 500, 32, 8));  // 0.5 >= 0.5
  // H=8, G=2: threshold 1/2.
  EXPECT_EQ(check_two_phase("auto", Shape{8, 2}, {{200, 20}, {20, 200}, {7, 9}}),
            (std::vector<std::string>{"pass-q", "ring", "ring"}));
  // H=12, G=4: threshold 2/3.
  EXPECT_EQ(check_two_phase("auto", Shape{12, 4}, {{50, 50}, {10, 90}}),
            (std::vector<std::string>{"pass-q", "ring"}));
  // H=G: 2G/H = 2, pass-Q whenever something is cached.
  EXPECT_EQ(check_two_phase("auto", Shape{4, 4}, {{3, 40}}), (std::vector<std::string>{"pass-q"}));
}

// Every scheme reads the KV cache through its page table and computes attention with the
// engine's kernel: pages of 16 and 256 tokens, Q8_0 rows and the materialized-score kernel
// give under every scheme what they give on one rank (the local scheme with the same options).
TEST(SpExactness, EverySchemeWithPagesQ8RowsAndKernels) {
  struct Case {
    int64_t page;
    DType type;
    bool flash;
  };
  const std::vector<Case> cases = {{16, DType::F32, true},   {256, DType::F32, true},
                                   {16, DType::Q8_0, true},  {256, DType::Q8_0, true},
                                   {0, DType::Q8_0, true},   {16, DType::F32, false},
                                   {16, DType::Q8_0, false}};
  for (const Shape sh : {Shape{4, 4}, Shape{8, 4}}) {  // K/V rows of 32 values: Q8_0 blocks
    const auto m = make_model(sh);
    for (int64_t n : {1, 13, 101, 257}) {
      const auto ids = random_ids(n, m->hparams().n_vocab, uint32_t(n + 5));
      const auto more = random_ids(6, m->hparams().n_vocab, uint32_t(n + 6));
      for (const Case& c : cases) {
        EngineOptions opt;
        opt.kv.page_tokens = c.page;
        opt.kv.type = c.type;
        opt.flash_attention = c.flash;
        const Reference ref = reference(*m, ids, more, opt);
        for (const parallel::SchemeDesc* d : parallel::scheme_registry()) {
          if (d->name == "local") continue;
          for (int P : {2, 3, 4}) {
            std::string name(d->name);
            if (name == "hybrid") {
              if (P != 4) continue;
              name = "hybrid:2x2";
            }
            const SpRun r = run_sp(m, ids, more, P, name, ref, opt);
            const std::string what = name + " P=" + std::to_string(P) + " N=" + std::to_string(n) +
                                     " page " + std::to_string(c.page) + " " +
                                     std::string(dtype_name(c.type)) + (c.flash ? "" : " no-flash");
            EXPECT_LE(r.prefill, 1e-4) << what;
            EXPECT_LE(r.decode, 1e-4) << what << " decode";
          }
        }
      }
    }
  }
}

// --no-flash-attn is not ignored under a scheme: its prefill's attention runs the
// materialized-score kernel (which records its score buffers), and with flash attention
// it never runs.
TEST(SpExactness, KernelChoiceReachesEveryScheme) {
  const auto m = make_model(Shape{8, 4});
  const auto ids = random_ids(64, m->hparams().n_vocab, 3);
  for (const parallel::SchemeDesc* d : parallel::scheme_registry()) {
    const std::string name = d->name == "hybrid" ? "hybrid:2x2" : std::string(d->name);
    const int P = d->name == "local" ? 1 : d->name == "hybrid" ? 4 : 2;
    for (bool flash : {true, false}) {
      kernels::reset_attention_scratch_peak();
      comm::run_in_process(P, [&](comm::Communicator& comm) {
        SessionOptions so;
        so.scheme = name;
        so.engine.flash_attention = flash;
        Session s(m, so, comm);
        s.prefill(ids, 1);
      });
      if (flash)
        EXPECT_EQ(kernels::attention_scratch_peak(), 0u) << name;
      else
        EXPECT_GT(kernels::attention_scratch_peak(), 0u) << name << " ignored --no-flash-attn";
    }
  }
}

// The logits of the last K positions only, gathered on rank 0 (zigzag shards: a rank's
// rows fall in two runs), equal the 1-rank rows; the other ranks end with none.
TEST(SpExactness, LastRowsGatheredOnRankZero) {
  const auto m = make_model({4, 2});
  const int64_t V = m->hparams().n_vocab, n = 23;
  const auto ids = random_ids(n, V, 5);
  const Reference ref = reference(*m, ids, {});
  for (const std::string scheme : {"zigzag", "ring"})
    for (int P : {2, 3}) {
      for (int64_t k : {0, 1, 9, 23}) {
        std::vector<float> got;
        std::vector<size_t> sizes(size_t(P), 0);
        std::mutex mu;
        comm::run_in_process(P, [&](comm::Communicator& comm) {
          SessionOptions so;
          so.scheme = scheme;
          Session s(m, so, comm);
          auto all = s.gather_logits(s.prefill(ids, k));
          const std::lock_guard<std::mutex> lock(mu);
          sizes[size_t(comm.rank())] = all.size();
          if (comm.rank() == 0) got = std::move(all);
        });
        SCOPED_TRACE(scheme + " P=" + std::to_string(P) + " K=" + std::to_string(k));
        ASSERT_EQ(got.size(), size_t(k * V));
        for (int q = 1; q < P; ++q) EXPECT_EQ(sizes[size_t(q)], 0u) << "rank " << q;
        if (k > 0)
          EXPECT_LE(max_rel_diff(got.data(), ref.prefill.data() + (n - k) * V, k, V), 1e-4);
      }
    }
}

// A second prompt of the same length in one session reuses the first's KV cache, emptied:
// its logits and the decode step after it equal those of a fresh session (nothing of the
// first prompt's keys is read).
TEST(SpExactness, SecondPromptReusesTheCacheAsNew) {
  const auto m = make_model({4, 2});
  const int64_t V = m->hparams().n_vocab, n = 23;
  const auto second = random_ids(n, V, 6);
  // The session keeps its prefill strategy too: a first prompt of the same length (the
  // cache kept), a longer or a shorter one (the strategy's buffers sized for it) leaves
  // nothing behind.
  for (const auto& [scheme, P, n_first] : std::vector<std::tuple<std::string, int, int64_t>>{
           {"local", 1, n}, {"zigzag", 2, n}, {"ring", 2, n + 9}, {"ring", 2, n - 9}, {"ulysses", 2, n},
           {"ulysses", 2, n + 9}, {"ulysses", 2, n - 9},
           {"pass-q", 2, n + 9}, {"hybrid:2x2", 4, n + 9}}) {
    const auto first = random_ids(n_first, V, 5);
    auto run = [&, scheme = scheme, P = P](bool twice) {
      std::vector<float> out;
      std::mutex mu;
      comm::run_in_process(P, [&](comm::Communicator& comm) {
        SessionOptions so;
        so.scheme = scheme;
        Session s(m, so, comm);
        if (twice) s.prefill(first, 1, 2);
        auto logits = s.gather_logits(s.prefill(second, 1, 2));
        std::vector<float> step(static_cast<size_t>(V));
        s.decode_step(second[0], int32_t(n), step.data());
        const std::lock_guard<std::mutex> lock(mu);
        if (comm.rank() == 0) {
          out = std::move(logits);
          out.insert(out.end(), step.begin(), step.end());
        }
      });
      return out;
    };
    SCOPED_TRACE(scheme + " after " + std::to_string(n_first) + " tokens");
    const auto fresh = run(false), reused = run(true);
    ASSERT_EQ(fresh.size(), size_t(2 * V));
    EXPECT_EQ(reused, fresh);
  }
}
