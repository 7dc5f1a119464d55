#pragma once
// Training sequences: the built-in passkey task and text files packed into sequences.
// A sequence is ctx tokens with their next-token targets (-1: not counted in the loss).
// Sources are deterministic: sequence i of a source depends only on its seed and i, so a
// resumed run and every rank see the same sequences.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tandem {
class Tokenizer;
}

namespace tandem::train {

struct Sequence {
  std::vector<int32_t> tokens, targets;  // [ctx] each
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  // Sequence i (any i >= 0; text sources wrap around their data).
  virtual Sequence get(int64_t i) const = 0;
  virtual int64_t ctx() const = 0;
};

// Passkey retrieval: a number of kPasskeyDigits digits hidden at a random depth of random
// filler, asked for at the end; only the answer's digits are counted in the loss, so a
// model lowers its loss only by reading the key from wherever it lies in the context.
// Token ids (the task's own vocabulary of kPasskeyVocab ids, the low ids of any model):
//   0 BOS, 1 key marker, 2 query marker, 3..12 the digits 0-9, 13.. filler.
// Layout: BOS, filler, KEY d1..dK, filler, QUERY d1..dK (the key's position uniform
// over the filler). held_out draws from a stream disjoint from the training one.
inline constexpr int64_t kPasskeyDigits = 5;
inline constexpr int64_t kPasskeyVocab = 64;
inline constexpr int32_t kPasskeyDigit0 = 3;
std::unique_ptr<DataSource> passkey_source(int64_t ctx, uint64_t seed, bool held_out);

// A text file tokenized with `tok` and cut into consecutive sequences of ctx + 1 tokens
// (tokens = the first ctx, targets = the last ctx), in an order shuffled per pass by the
// seed. Throws Error(BadInput) naming the file when it gives fewer than ctx + 1 tokens.
std::unique_ptr<DataSource> text_source(const std::string& path, const Tokenizer& tok,
                                        int64_t ctx, uint64_t seed);

}  // namespace tandem::train
