// The gradient all-reduce overlapped with the backward (GradReducer): the sum equals the
// blocking one, pieces are posted before finish() as their spans become final, and
// ModelGrad reports each tensor's gradient only once it is final, covering the buffer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "tandem/comm/in_process.hpp"
#include "tandem/train/grad_reduce.hpp"
#include "tandem/train/model_grad.hpp"
#include "tandem/train/params.hpp"
#include "train/train_specs.hpp"

namespace tandem::train {
namespace {

SynthSpec spec() { return test::gqa_llama(16, 3, 24, 32); }

// The spans in the order ModelGrad::step reports them.
std::vector<ParamSet::Span> backward_order(const ParamSet& p) {
  std::vector<ParamSet::Span> out = {p.span("output.weight"), p.span("output_norm.weight")};
  for (int64_t l = p.spec().n_layer - 1; l >= 0; --l)
    for (const ParamSet::Span& s : p.layer_spans(l)) out.push_back(s);
  out.push_back(p.span("token_embd.weight"));
  return out;
}

float value(int rank, int64_t i) { return float((i * 7 + rank * 13) % 31) - 15.0f; }

TEST(GradReducer, SpansTileTheBuffer) {
  const ParamSet p(spec());
  std::vector<int> seen(size_t(p.size()), 0);
  for (const ParamSet::Span& s : backward_order(p))
    for (int64_t i = s.first; i < s.first + s.n; ++i) ++seen[size_t(i)];
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
}

TEST(GradReducer, OverlappedSumEqualsTheSumAndStartsBeforeFinish) {
  constexpr int P = 3;
  for (const bool overlap : {true, false}) {
    comm::run_in_process(P, [&](comm::Communicator& c) {
      ParamSet g(spec());
      GradReducer red(c, g, overlap, 64);
      for (int step = 0; step < 2; ++step) {  // the reducer is reused across steps
        for (int64_t i = 0; i < g.size(); ++i) g.data()[i] = value(c.rank(), i + step);
        for (const ParamSet::Span& s : backward_order(g)) {
          red.ready(s);
          red.progress();
        }
        red.finish();
        for (int64_t i = 0; i < g.size(); ++i) {
          float want = 0.0f;
          for (int r = 0; r < P; ++r) want += value(r, i + step);
          ASSERT_EQ(g.data()[i], want) << "float " << i << " step " << step << " overlap " << overlap;
        }
        if (overlap) {
          // Pieces are posted during the "backward" up to the cap in flight: the
          // in-process backend completes an iallreduce only in its wait (at finish()).
          const ParamSet::Span e = g.span("token_embd.weight");
          const int64_t late = (e.first + e.n + 63) / 64 - e.first / 64;
          EXPECT_EQ(red.posted_early(),
                    std::min<int64_t>(GradReducer::kMaxInFlight, red.pieces() - late));
        } else {
          EXPECT_EQ(red.posted_early(), 0);
        }
      }
    });
  }
}

// Records each span's values when reported, to compare with the step's final gradient.
class Snapshot final : public GradSink {
 public:
  explicit Snapshot(const ParamSet& g) : g_(g), at_(size_t(g.size()), 0.0f), seen_(size_t(g.size()), 0) {}
  void ready(ParamSet::Span s) override {
    std::memcpy(at_.data() + s.first, g_.data() + s.first, size_t(s.n) * sizeof(float));
    for (int64_t i = s.first; i < s.first + s.n; ++i) ++seen_[size_t(i)];
  }
  void progress() override { ++progress_calls; }
  const ParamSet& g_;
  std::vector<float> at_;
  std::vector<int> seen_;
  int progress_calls = 0;
};

TEST(GradReducer, ModelGradReportsEachGradientOnceWhenFinal) {
  ParamSet p(spec()), g(spec());
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-0.3f, 0.3f);
  for (int64_t i = 0; i < p.size(); ++i) p.data()[i] = u(rng);
  for (const bool ckpt : {false, true}) {
    kernels::ThreadPool pool(2);
    auto attn = parallel::make_local_attention_grad(attn_shape(p.spec()), pool);
    ModelGrad mg(p, *attn, pool, 32, ckpt);
    SeqShard s;
    for (int32_t i = 0; i < 11; ++i) {
      s.tokens.push_back((i * 5) % 32);
      s.targets.push_back((i * 5 + 3) % 32);
      s.pos.push_back(i);
    }
    std::fill(g.data(), g.data() + g.size(), 0.0f);
    Snapshot snap(g);
    mg.step(s, 1.0f, g, &snap);
    EXPECT_TRUE(std::all_of(snap.seen_.begin(), snap.seen_.end(), [](int c) { return c == 1; }));
    for (int64_t i = 0; i < g.size(); ++i)
      ASSERT_EQ(snap.at_[size_t(i)], g.data()[i]) << "float " << i << " changed after it was reported";
    EXPECT_GT(snap.progress_calls, 0);
  }
}

}  // namespace
}  // namespace tandem::train
