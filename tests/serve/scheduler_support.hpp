#pragma once
// Shared by the scheduler tests: a tiny F32 model, a recording sink that can be waited
// on with a timeout, and the reference of a prompt run alone (generate()).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "support/test_model.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/generate.hpp"
#include "tandem/runtime/sampler.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/serve/scheduler.hpp"

namespace tandem::test {

constexpr int64_t kVocab = 300;

inline const Model& sched_model() {
  static const auto m = load_model(write_test_model(
      "scheduler_f32", {.n_embd = 64, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .n_ff = 128,
                        .n_ctx = 4096, .type = DType::F32, .seed = 33, .n_vocab = kVocab}));
  return *m;
}

inline std::vector<int32_t> random_prompt(std::mt19937& rng, size_t n) {
  std::uniform_int_distribution<int32_t> d(0, kVocab - 1);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = d(rng);
  return ids;
}

// The tokens `prompt` generates alone: the single-sequence path (prefill, then KV-cached
// decode), no end-of-sequence stop.
inline std::vector<int32_t> alone(Engine& e, const std::vector<int32_t>& prompt, int n,
                                  const SamplerParams& sp = {0.0f, 0, 1.0f, 0}) {
  KVCache cache = e.make_cache(int64_t(prompt.size()) + n);
  GenerateParams gp;
  gp.n_predict = n;
  gp.sampler = sp;
  gp.stop_at_eog = false;
  std::vector<int32_t> out;
  generate(e, cache, prompt, gp, {}, &out);
  return out;
}

// The same by Engine::forward step by step, with the log-softmax of each chosen token
// (what TokenEvent.logprob reports): tokens and logprobs of `prompt` alone, greedy.
// The tests compare both: this random tiny model's distributions are nearly flat and
// depend on the context only a little, so its greedy tokens alone can miss a wrong
// position or wrong K/V rows (tried: decode positions off by one kept every token);
// the logprobs do not (it changed them by up to 8e-4, against 1e-7 from batching).
struct Alone {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};
inline Alone alone_logprobs(Engine& e, const std::vector<int32_t>& prompt, int n) {
  KVCache cache = e.make_cache(int64_t(prompt.size()) + n);
  std::vector<float> logits(static_cast<size_t>(kVocab));
  std::vector<int32_t> ids = prompt, pos(prompt.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  Alone out;
  for (int k = 0; k < n; ++k) {
    e.forward(cache, ids, pos, 1, logits.data());
    const int32_t t = argmax(logits);
    const float mx = logits[size_t(t)];
    double sum = 0;
    for (float x : logits) sum += std::exp(double(x) - mx);
    out.tokens.push_back(t);
    out.logprobs.push_back(float(-std::log(sum)));
    const int32_t next = int32_t(cache.size());
    ids = {t};
    pos = {next};
  }
  return out;
}

// Records what the scheduler reports. stop_after >= 0: on_token returns false after that
// many tokens (a stop string when by_text). hook: called with each token count.
class RecordingSink : public serve::SequenceSink {
 public:
  int stop_after = -1;
  bool by_text = false;
  std::function<void(int)> hook;

  bool on_token(const serve::TokenEvent& t) override {
    int n;
    {
      std::lock_guard lk(mu_);
      tokens_.push_back(t.token);
      events_.push_back(t);
      n = int(tokens_.size());
    }
    if (hook) hook(n);
    return stop_after < 0 || n < stop_after;
  }
  bool stopped_by_text() const override { return by_text; }
  void on_finish(serve::Finish why, const serve::SequenceStats& st,
                 const std::string& error) override {
    {
      std::lock_guard lk(mu_);
      why_ = why;
      st_ = st;
      error_ = error;
    }
    if (finishes_.fetch_add(1) == 0) done_.set_value();
  }

  // Waits for on_finish (false after `seconds`).
  bool wait(double seconds = 120) {
    return fut_.wait_for(std::chrono::duration<double>(seconds)) == std::future_status::ready;
  }
  int finishes() const { return finishes_.load(); }
  std::vector<int32_t> tokens() const { std::lock_guard lk(mu_); return tokens_; }
  std::vector<serve::TokenEvent> events() const { std::lock_guard lk(mu_); return events_; }
  serve::Finish why() const { std::lock_guard lk(mu_); return why_; }
  serve::SequenceStats stats() const { std::lock_guard lk(mu_); return st_; }
  std::string error() const { std::lock_guard lk(mu_); return error_; }

 private:
  mutable std::mutex mu_;
  std::vector<int32_t> tokens_;
  std::vector<serve::TokenEvent> events_;
  serve::Finish why_ = serve::Finish::Error;
  serve::SequenceStats st_;
  std::string error_;
  std::atomic<int> finishes_{0};
  std::promise<void> done_;
  std::shared_future<void> fut_ = done_.get_future().share();
};

inline serve::GenParams greedy(int max_tokens) {
  serve::GenParams p;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  p.top_logprobs = 0;  // the chosen token's logprob: compared with the one alone
  return p;
}

// The tokens equal those alone, and each token's logprob within 1e-4 of its logprob
// alone (batched matmuls round differently: about 1e-7 here).
inline void expect_as_alone(const RecordingSink& k, const Alone& want, const std::string& what) {
  EXPECT_EQ(k.tokens(), want.tokens) << what;
  const auto ev = k.events();
  ASSERT_EQ(ev.size(), want.logprobs.size()) << what;
  for (size_t i = 0; i < ev.size(); ++i)
    EXPECT_NEAR(ev[i].logprob, want.logprobs[i], 1e-4) << what << ", token " << i;
}

}  // namespace tandem::test
