#include "tandem/train/data.hpp"

#include <algorithm>
#include <numeric>
#include <random>

#include "tandem/core/error.hpp"
#include "tandem/core/text_file.hpp"
#include "tandem/model/tokenizer.hpp"

namespace tandem::train {
namespace {

// A generator seeded from (seed, stream, i): sequence i is reproducible on its own.
std::mt19937_64 rng_of(uint64_t seed, uint64_t stream, int64_t i) {
  std::seed_seq s{uint32_t(seed), uint32_t(seed >> 32), uint32_t(stream), uint32_t(i),
                  uint32_t(uint64_t(i) >> 32)};
  return std::mt19937_64(s);
}

class Passkey final : public DataSource {
 public:
  Passkey(int64_t ctx, uint64_t seed, bool held_out)
      : ctx_(ctx), seed_(seed), stream_(held_out ? 2 : 1) {
    if (ctx < 2 * kPasskeyDigits + 4)
      bad_input("--ctx {}: the passkey task needs at least {} tokens", ctx, 2 * kPasskeyDigits + 4);
  }
  int64_t ctx() const override { return ctx_; }

  Sequence get(int64_t i) const override {
    std::mt19937_64 rng = rng_of(seed_, stream_, i);
    const int64_t K = kPasskeyDigits;
    std::uniform_int_distribution<int32_t> filler(kPasskeyDigit0 + 10, int32_t(kPasskeyVocab - 1));
    std::uniform_int_distribution<int32_t> digit(0, 9);
    Sequence s;
    s.tokens.resize(size_t(ctx_));
    s.targets.assign(size_t(ctx_), -1);
    for (auto& t : s.tokens) t = filler(rng);
    s.tokens[0] = 0;
    std::vector<int32_t> key(static_cast<size_t>(K));
    for (auto& k : key) k = kPasskeyDigit0 + digit(rng);
    // The query sits at the end: QUERY d1..dK occupies the last K + 1 tokens.
    const int64_t query = ctx_ - K - 1;
    std::uniform_int_distribution<int64_t> depth(1, query - K - 1);
    const int64_t at = depth(rng);
    s.tokens[size_t(at)] = 1;
    s.tokens[size_t(query)] = 2;
    for (int64_t j = 0; j < K; ++j) {
      s.tokens[size_t(at + 1 + j)] = key[size_t(j)];
      s.tokens[size_t(query + 1 + j)] = key[size_t(j)];
      s.targets[size_t(query + j)] = key[size_t(j)];
    }
    return s;
  }

 private:
  int64_t ctx_;
  uint64_t seed_, stream_;
};

class Text final : public DataSource {
 public:
  Text(std::vector<int32_t> ids, int64_t ctx, uint64_t seed)
      : ids_(std::move(ids)), ctx_(ctx), seed_(seed), count_((int64_t(ids_.size()) - 1) / ctx) {}
  int64_t ctx() const override { return ctx_; }

  Sequence get(int64_t i) const override {
    const int64_t pass = i / count_, k = i % count_;
    // The order of one pass: a permutation drawn from (seed, pass).
    std::vector<int64_t> order(static_cast<size_t>(count_));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng = rng_of(seed_, 3, pass);
    std::shuffle(order.begin(), order.end(), rng);
    const int64_t at = order[size_t(k)] * ctx_;
    Sequence s;
    s.tokens.assign(ids_.begin() + at, ids_.begin() + at + ctx_);
    s.targets.assign(ids_.begin() + at + 1, ids_.begin() + at + ctx_ + 1);
    return s;
  }

 private:
  std::vector<int32_t> ids_;
  int64_t ctx_;
  uint64_t seed_;
  int64_t count_;
};

}  // namespace

std::unique_ptr<DataSource> passkey_source(int64_t ctx, uint64_t seed, bool held_out) {
  return std::make_unique<Passkey>(ctx, seed, held_out);
}

std::unique_ptr<DataSource> text_source(const std::string& path, const Tokenizer& tok,
                                        int64_t ctx, uint64_t seed) {
  const std::string text = read_file_bounded(path, "--data");
  std::vector<int32_t> ids = tok.encode(text, true);
  if (int64_t(ids.size()) < ctx + 1)
    bad_input("--data {}: {} tokens, fewer than one sequence of --ctx {} + 1", path, ids.size(),
              ctx);
  return std::make_unique<Text>(std::move(ids), ctx, seed);
}

}  // namespace tandem::train
