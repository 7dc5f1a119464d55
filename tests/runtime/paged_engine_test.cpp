// The engine on a paged KV cache: every page size gives the logits of the contiguous
// cache (prefill in chunks, then decode), Q8_0 rows stay close to f32, and sequences
// forked from a shared prompt (pages shared, the partial last page copied on write)
// give the logits of running each sequence alone.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "support/test_model.hpp"
#include "support/test_paths.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/synth.hpp"
#include "tandem/runtime/engine.hpp"

using namespace tandem;

namespace {

const Model& model() {
  static const auto m = [] {
    // 8 heads of 32: KV rows of 2 x 32, a Q8_0 block each.
    return load_model(test::write_test_model(
        "paged_engine", {.n_embd = 256, .n_layer = 2, .n_head = 8, .n_head_kv = 2, .n_ff = 192,
                         .n_ctx = 4096, .type = DType::F32, .seed = 11, .n_vocab = 300}));
  }();
  return *m;
}

std::vector<int32_t> random_ids(std::mt19937& rng, size_t n) {
  std::uniform_int_distribution<int32_t> d(0, 299);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = d(rng);
  return ids;
}

// Runs ids[0..prompt) as one prefill (in engine chunks), then the rest one token per
// step, on `cache`; returns the logits of the last prompt token and of every step.
std::vector<std::vector<float>> run(Engine& e, KVCache& cache, const std::vector<int32_t>& ids,
                                    size_t prompt, size_t from = 0) {
  const int64_t V = e.model().hparams().n_vocab;
  std::vector<std::vector<float>> out;
  std::vector<int32_t> pos(ids.size());
  std::iota(pos.begin(), pos.end(), 0);
  if (prompt > from) {
    out.emplace_back(size_t(V));
    e.forward(cache, std::span(ids).subspan(from, prompt - from),
              std::span(pos).subspan(from, prompt - from), 1, out.back().data());
  }
  for (size_t i = std::max(prompt, from); i < ids.size(); ++i) {
    out.emplace_back(size_t(V));
    e.forward(cache, std::span(ids).subspan(i, 1), std::span(pos).subspan(i, 1), 1,
              out.back().data());
  }
  return out;
}

double max_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t s = 0; s < std::min(a.size(), b.size()); ++s)
    for (size_t i = 0; i < a[s].size(); ++i) d = std::max(d, double(std::fabs(a[s][i] - b[s][i])));
  return d;
}

TEST(PagedEngine, EveryPageSizeGivesTheContiguousLogits) {
  kernels::ThreadPool pool(2);
  Engine e(model(), pool, /*chunk*/ 48);  // prefill of 150 tokens in 4 chunks
  std::mt19937 rng(3);
  const auto ids = random_ids(rng, 170);
  KVCache flat = e.make_cache(int64_t(ids.size()));
  ASSERT_TRUE(flat.contiguous());
  const auto want = run(e, flat, ids, 150);
  for (int64_t page : {1, 7, 16, 64, 100}) {
    KVCache paged = e.make_cache(int64_t(ids.size()), {page, DType::F32, 0});
    EXPECT_FALSE(paged.contiguous());
    const auto got = run(e, paged, ids, 150);
    EXPECT_LT(max_diff(got, want), 1e-4) << "page " << page;
    EXPECT_EQ(paged.stats().blocks_used, (int64_t(ids.size()) + page - 1) / page) << "page " << page;
  }
}

// Same with every optional technique off (materialized attention reads the pages
// through a gather; reference kernels too).
TEST(PagedEngine, OtherAttentionKernelsReadPagesToo) {
  kernels::ThreadPool pool(2);
  std::mt19937 rng(4);
  const auto ids = random_ids(rng, 90);
  for (bool reference : {false, true}) {
    Engine e(model(), pool, 32);
    EngineOptions o;
    o.flash_attention = false;
    o.reference_kernels = reference;
    e.set_options(o);
    KVCache flat = e.make_cache(int64_t(ids.size()));
    const auto want = run(e, flat, ids, 80);
    KVCache paged = e.make_cache(int64_t(ids.size()), {16, DType::F32, 0});
    EXPECT_LT(max_diff(run(e, paged, ids, 80), want), 1e-4) << (reference ? "reference" : "plain");
  }
}

TEST(PagedEngine, Q8RowsStayCloseToF32) {
  kernels::ThreadPool pool(2);
  Engine e(model(), pool, 48);
  std::mt19937 rng(5);
  const auto ids = random_ids(rng, 140);
  KVCache flat = e.make_cache(int64_t(ids.size()));
  const auto want = run(e, flat, ids, 120);
  for (int64_t page : {0, 16}) {
    KVCache q8 = e.make_cache(int64_t(ids.size()), {page, DType::Q8_0, 0});
    EXPECT_EQ(q8.type(), DType::Q8_0);
    EXPECT_LT(q8.bytes() * 3, flat.bytes()) << "q8_0 rows take 34 bytes per 32 values";
    const auto got = run(e, q8, ids, 120);
    const double d = max_diff(got, want);
    std::printf("q8_0 KV rows, page %lld: max |logit diff| %.3g over %zu steps\n", (long long)page, d,
                got.size());
    // Rows are rounded to 8 bits per block of 32 (relative step 1/254 of the block's
    // largest value): the logits move, but little.
    EXPECT_GT(d, 1e-6) << "page " << page << ": q8_0 rows must change the logits";
    EXPECT_LT(d, 5e-2) << "page " << page;
    int same_top = 0;
    for (size_t s = 0; s < got.size(); ++s)
      same_top += std::max_element(got[s].begin(), got[s].end()) - got[s].begin() ==
                  std::max_element(want[s].begin(), want[s].end()) - want[s].begin();
    EXPECT_GE(same_top, int(got.size()) - 2) << "page " << page;
  }
}

// Two continuations of one prompt: the fork shares the prompt's pages (the last,
// partial one is copied when the fork first writes), and neither sequence disturbs the
// other.
TEST(PagedEngine, ForkedSequencesShareThePromptAndMatchRunningAlone) {
  kernels::ThreadPool pool(2);
  Engine e(model(), pool, 48);
  std::mt19937 rng(6);
  const size_t prompt = 70;  // 4 full pages of 16 and 6 tokens of a fifth
  const auto p = random_ids(rng, prompt);
  auto a = p, b = p;
  for (int32_t id : random_ids(rng, 12)) a.push_back(id);
  for (int32_t id : random_ids(rng, 12)) b.push_back(id);
  const int64_t cap = int64_t(a.size());

  KVCache flat_a = e.make_cache(cap), flat_b = e.make_cache(cap);
  const auto want_a = run(e, flat_a, a, prompt), want_b = run(e, flat_b, b, prompt);

  KVCache seq_a = e.make_cache(cap, {16, DType::F32, 2 * cap});
  auto got_a = run(e, seq_a, std::vector<int32_t>(a.begin(), a.begin() + prompt), prompt);
  KVCache seq_b = seq_a.fork(int64_t(prompt));
  const PagedKVStats shared = seq_a.stats();
  EXPECT_EQ(shared.blocks_used, 5);
  EXPECT_EQ(shared.blocks_shared, 5);
  // a decodes first (its writes go to the shared partial page: copied), then b.
  for (auto& l : run(e, seq_a, a, prompt, prompt)) got_a.push_back(std::move(l));
  auto got_b = run(e, seq_b, b, prompt, prompt);
  got_b.insert(got_b.begin(), got_a.front());  // the prompt's logits are shared too
  EXPECT_LT(max_diff(got_a, want_a), 1e-4);
  EXPECT_LT(max_diff(got_b, want_b), 1e-4);
  // 4 shared full pages, then each sequence's own copy of page 5 (82 tokens = 6 pages).
  const PagedKVStats after = seq_a.stats();
  EXPECT_EQ(after.blocks_shared, 4);
  EXPECT_EQ(after.blocks_used, 4 + 2 * 2);
  // (Two unshared caches would hold 2 x 6 pages.)
  EXPECT_EQ(seq_a.used_bytes(), size_t(after.blocks_used) * seq_a.page_bytes());
  // Running a again on its own pages after b wrote its own gives a's logits.
  seq_a.truncate(int64_t(prompt));
  EXPECT_LT(max_diff(run(e, seq_a, a, prompt, prompt),
                     std::vector<std::vector<float>>(want_a.begin() + 1, want_a.end())),
            1e-4);
}

TEST(PagedEngine, ClearErrors) {
  kernels::ThreadPool pool(1);
  Engine e(model(), pool);
  KVCache c = e.make_cache(10, {4, DType::F32, 0});
  std::vector<int32_t> pos(11);
  std::iota(pos.begin(), pos.end(), 0);
  EXPECT_THROW(c.append(11, pos.data()), Error);
  EXPECT_THROW(c.fork(1), Error);  // holds 0 tokens
  EXPECT_THROW(e.make_cache(10, {-1, DType::F32, 0}), Error);
  // A fork in a pool without room for its copy of the partial page runs out of pages.
  KVCache tight = e.make_cache(8, {4, DType::F32, 0});
  tight.append(6, pos.data());
  KVCache f = tight.fork(6);
  EXPECT_THROW(f.append(1, pos.data() + 6), Error);
}

}  // namespace
