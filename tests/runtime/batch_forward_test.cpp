// Continuous batching (Engine::forward_batch): a step mixing decode rows of several
// sequences with prompt chunks of others, all in one shared page pool, gives each
// sequence the logits it gets alone (Engine::forward on its own cache); greedy decoding
// of sequences batched together picks the tokens each picks alone; a fork inside the
// batch matches a recomputation; a pool that cannot take a step throws Error(Resource)
// and leaves every cache as it was.
//
// Not bit-exact for F32 weights: a batched step runs each matmul over all its rows (the
// GEMM kernels, tiled and accumulated in another order than the one-row GEMV of a decode
// step alone), so logits differ by float rounding (about 1e-7 here; 0 with the Q8_0
// weights, whose integer dot products do not depend on the order); 1e-4 bounds it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>

#include "support/test_model.hpp"
#include "tandem/core/error.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/weight_layout.hpp"

using namespace tandem;

namespace {

constexpr int64_t kVocab = 300;
const KVCacheOptions kPaged{16, DType::F32, 0};

const Model& model(DType type) {
  auto make = [](DType t, const char* name) {
    return load_model(test::write_test_model(
        name, {.n_embd = 64, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .n_ff = 128,
               .n_ctx = 4096, .type = t, .seed = 21, .n_vocab = kVocab}));
  };
  static const auto f32 = make(DType::F32, "batch_forward_f32");
  static const auto q8 = make(DType::Q8_0, "batch_forward_q8_0");
  return type == DType::F32 ? *f32 : *q8;
}

std::vector<int32_t> random_ids(std::mt19937& rng, size_t n) {
  std::uniform_int_distribution<int32_t> d(0, kVocab - 1);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = d(rng);
  return ids;
}

std::vector<int32_t> positions(int64_t from, int64_t n) {
  std::vector<int32_t> pos(static_cast<size_t>(n));
  std::iota(pos.begin(), pos.end(), int32_t(from));
  return pos;
}

// The logits of the last of `ids`, run alone on a fresh cache of its own.
std::vector<float> alone(Engine& e, const std::vector<int32_t>& ids) {
  KVCache cache = e.make_cache(int64_t(ids.size()), kPaged);
  std::vector<float> out(static_cast<size_t>(kVocab));
  const auto pos = positions(0, int64_t(ids.size()));
  e.forward(cache, ids, pos, 1, out.data());
  return out;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::fabs(a[i] - b[i])));
  return d;
}

int32_t argmax(const std::vector<float>& v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

// A sequence of the tests: its cache in the shared pool, every token it has run, and
// the batch item of its next rows.
struct Seq {
  explicit Seq(KVCache c, std::vector<int32_t> stored = {})
      : cache(std::move(c)), ids(std::move(stored)) {}
  KVCache cache;
  std::vector<int32_t> ids;   // tokens stored in the cache
  std::vector<int32_t> next;  // the rows of the next step
  std::vector<int32_t> pos;
  std::vector<float> logits = std::vector<float>(size_t(kVocab));

  BatchItem item(bool want_logits) {
    pos = positions(int64_t(ids.size()), int64_t(next.size()));
    return {&cache, next, pos, want_logits ? logits.data() : nullptr};
  }
  // After the step: next joins ids.
  void commit() {
    ids.insert(ids.end(), next.begin(), next.end());
    next.clear();
  }
};

// One batched step of every sequence in `seqs` with rows; returns the worst difference
// between the logits asked for and those of each sequence alone.
double step(Engine& e, std::vector<Seq*> seqs, const std::vector<bool>& want) {
  std::vector<BatchItem> items;
  for (size_t i = 0; i < seqs.size(); ++i) items.push_back(seqs[i]->item(want[i]));
  e.forward_batch(items);
  double worst = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i]->commit();
    if (want[i]) worst = std::max(worst, max_diff(seqs[i]->logits, alone(e, seqs[i]->ids)));
  }
  return worst;
}

class BatchForward : public ::testing::TestWithParam<DType> {};

// Decode rows of three sequences of different lengths, two prompts finishing (one split
// across steps when the chunk is small, one gathered around the logits tail) and a
// prompt chunk asking no logits, in one pool of 16-token pages.
TEST_P(BatchForward, MixedStepEqualsEachSequenceAlone) {
  kernels::ThreadPool pool(2);
  for (int64_t chunk : {512, 16}) {
    Engine e(model(GetParam()), pool, chunk);
    auto kv = e.make_pool(1024, kPaged);
    std::mt19937 rng(7);
    std::vector<Seq> s;
    for (int i = 0; i < 6; ++i) s.emplace_back(KVCache(kv, 0));
    // Decoders a, b, c with 20, 37 and 5 tokens stored (prefilled one at a time).
    for (int i : {0, 1, 2}) {
      s[size_t(i)].next = random_ids(rng, std::vector<size_t>{20, 37, 5}[size_t(i)]);
      step(e, {&s[size_t(i)]}, {false});
    }
    const int64_t used = kv->stats().blocks_used;
    EXPECT_EQ(used, 2 + 3 + 1);
    for (Seq& q : s) q.next = random_ids(rng, 1);
    s[3].next = random_ids(rng, 30);  // a prompt that finishes
    s[4].next = random_ids(rng, 12);  // another
    s[5].next = random_ids(rng, 17);  // a prompt chunk, more to come
    const double d = step(e, {&s[3], &s[0], &s[4], &s[1], &s[5], &s[2]},
                          {true, true, true, true, false, true});
    EXPECT_LE(d, 1e-4) << "chunk " << chunk;
    // The chunked prompt finishes while the others decode.
    for (Seq& q : s) q.next = random_ids(rng, 1);
    s[5].next = random_ids(rng, 9);
    EXPECT_LE(step(e, {&s[0], &s[1], &s[2], &s[3], &s[4], &s[5]}, std::vector<bool>(6, true)), 1e-4)
        << "chunk " << chunk;
    int64_t tokens = 0;
    for (Seq& q : s) tokens += int64_t(q.ids.size());
    EXPECT_EQ(kv->stats().tokens, tokens);
    EXPECT_EQ(kv->stats().sequences, 6);
    std::printf("%s, chunk %lld: max |logit diff| %.3g, %lld pages in use\n",
                dtype_name(GetParam()).data(), (long long)chunk, d,
                (long long)kv->stats().blocks_used);
  }
}

// Four sequences decoded greedily, batched, pick the tokens each picks alone.
TEST_P(BatchForward, GreedyDecodeBatchedMatchesAlone) {
  kernels::ThreadPool pool(2);
  Engine e(model(GetParam()), pool);
  auto kv = e.make_pool(512, kPaged);
  std::mt19937 rng(9);
  const size_t prompt[4] = {3, 9, 17, 25};
  constexpr int kSteps = 24;
  std::vector<Seq> s;
  std::vector<std::vector<int32_t>> want(4);
  for (size_t i = 0; i < 4; ++i) {
    s.emplace_back(KVCache(kv, 0));
    s[i].next = random_ids(rng, prompt[i]);
    // Alone: prefill, then one token per step on a cache of its own.
    KVCache own = e.make_cache(256, kPaged);
    std::vector<float> logits(static_cast<size_t>(kVocab));
    std::vector<int32_t> ids = s[i].next;
    e.forward(own, ids, positions(0, int64_t(ids.size())), 1, logits.data());
    for (int t = 0; t < kSteps; ++t) {
      const int32_t id = argmax(logits);
      want[i].push_back(id);
      const auto pos = positions(int64_t(ids.size()), 1);
      ids.push_back(id);
      e.forward(own, std::span(ids).last(1), pos, 1, logits.data());
    }
  }
  std::vector<std::vector<int32_t>> got(4);
  for (int t = 0; t < kSteps; ++t) {
    std::vector<BatchItem> items;
    for (Seq& q : s) items.push_back(q.item(true));
    e.forward_batch(items);  // the prompts in the first step, one token each after
    for (size_t i = 0; i < 4; ++i) {
      s[i].commit();
      got[i].push_back(argmax(s[i].logits));
      s[i].next = {got[i].back()};
    }
  }
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(got[i], want[i]) << "sequence " << i;
}

// Sequences forked from another's prompt (pages shared, the partial last page copied
// on write) decode in the same step as their source and a new prompt.
TEST_P(BatchForward, ForkInsideBatchEqualsRecomputation) {
  kernels::ThreadPool pool(2);
  Engine e(model(GetParam()), pool);
  auto kv = e.make_pool(512, kPaged);
  std::mt19937 rng(13);
  std::vector<Seq> s;
  s.emplace_back(KVCache(kv, 0));
  s[0].next = random_ids(rng, 21);
  step(e, {&s[0]}, {false});
  s.push_back(Seq(s[0].cache.fork(21), s[0].ids));  // shares 2 pages, the second partial
  s.push_back(Seq(s[0].cache.fork(10), {s[0].ids.begin(), s[0].ids.begin() + 10}));
  s.emplace_back(KVCache(kv, 0));
  EXPECT_EQ(kv->stats().blocks_shared, 2);
  for (int t = 0; t < 3; ++t) {
    for (Seq& q : s) q.next = random_ids(rng, t == 0 ? 1 : 2);
    if (t == 0) s[3].next = random_ids(rng, 19);
    EXPECT_LE(step(e, {&s[0], &s[1], &s[2], &s[3]}, std::vector<bool>(4, true)), 1e-4)
        << "step " << t;
  }
}

// A pool that cannot take a step: Error(Resource), no cache or pool counter changes,
// and the caches still give the logits they gave before.
TEST_P(BatchForward, PoolExhaustionThrowsAndChangesNothing) {
  kernels::ThreadPool pool(2);
  Engine e(model(GetParam()), pool);
  auto kv = e.make_pool(64, kPaged);  // 4 pages
  std::mt19937 rng(17);
  std::vector<Seq> s;
  s.emplace_back(KVCache(kv, 0));
  s.emplace_back(KVCache(kv, 0));
  s[0].next = random_ids(rng, 30);  // 2 pages, room for 2 more tokens
  s[1].next = random_ids(rng, 20);  // 2 pages, room for 12 more
  step(e, {&s[0], &s[1]}, {false, false});
  const PagedKVStats before = kv->stats();
  EXPECT_EQ(before.blocks_free, 0);
  EXPECT_EQ(before.blocks_used, 4);
  auto expect_resource = [](auto&& fn) {
    try {
      fn();
      ADD_FAILURE() << "no error";
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::Resource) << err.what();
    }
  };
  auto unchanged = [&](const char* what) {
    EXPECT_EQ(s[0].cache.size(), 30) << what;
    EXPECT_EQ(s[1].cache.size(), 20) << what;
    const PagedKVStats now = kv->stats();
    EXPECT_EQ(now.blocks_used, before.blocks_used) << what;
    EXPECT_EQ(now.tokens, before.tokens) << what;
  };
  const auto pos = positions(30, 3);
  expect_resource([&] { s[0].cache.append(3, pos.data()); });
  unchanged("append");
  // s[0]'s 2 tokens fit and are appended first; s[1]'s 13 do not: both give way.
  s[0].next = random_ids(rng, 2);
  s[1].next = random_ids(rng, 13);
  std::vector<BatchItem> items{s[0].item(true), s[1].item(true)};
  expect_resource([&] { e.forward_batch(items); });
  unchanged("batch");
  // A sequence of a capacity of its own: full before the pool is.
  KVCache small(kv, 25);
  EXPECT_EQ(small.capacity(), 25);
  expect_resource([&] { small.append(26, nullptr); });
  EXPECT_EQ(small.size(), 0);
  // What fits still runs, on intact caches.
  s[1].next.pop_back();
  EXPECT_LE(step(e, {&s[0], &s[1]}, {true, true}), 1e-4);
  EXPECT_EQ(kv->stats().blocks_free, 0);
}

INSTANTIATE_TEST_SUITE_P(Types, BatchForward, ::testing::Values(DType::F32, DType::Q8_0),
                         [](const auto& p) { return std::string(dtype_name(p.param)); });

// Errors a caller can cause.
TEST(BatchForwardErrors, RefusedWhereItCannotRun) {
  kernels::ThreadPool pool(1);
  Engine e(model(DType::F32), pool);
  auto kv = e.make_pool(64, kPaged);
  KVCache c(kv, 0);
  const std::vector<int32_t> ids{1, 2}, pos{0, 1};
  std::vector<float> logits(static_cast<size_t>(kVocab));
  // The kind of error of a batch of one item, nullopt when it runs.
  auto kind = [&](std::vector<BatchItem> items) -> std::optional<ErrorKind> {
    try {
      e.forward_batch(items);
    } catch (const Error& err) {
      return err.kind();
    }
    return std::nullopt;
  };
  const BatchItem item{&c, ids, pos, logits.data()};
  EXPECT_EQ(kind({item, item}), ErrorKind::BadInput) << "one cache twice";
  const std::vector<int32_t> bad{1, int32_t(kVocab)};
  EXPECT_EQ(kind({BatchItem{&c, bad, pos, nullptr}}), ErrorKind::BadInput) << "token id";
  EXPECT_EQ(c.size(), 0);
  // A sequence-parallel strategy is set: refused.
  struct Other : parallel::SequenceAttention {
    using SequenceAttention::SequenceAttention;
    std::string_view name() const override { return "other"; }
    void attend(KVCache&, int64_t, const parallel::AttnStep&) override {}
  } other(e.attn_shape(), pool);
  e.set_attention(&other);
  EXPECT_EQ(kind({item}), ErrorKind::BadInput) << "non-local strategy";
  e.set_attention(nullptr);
  EXPECT_EQ(kind({item}), std::nullopt);
  EXPECT_EQ(c.size(), 2);
  // A pool needs pages.
  EXPECT_THROW(e.make_pool(64, KVCacheOptions{}), Error);
}

}  // namespace
