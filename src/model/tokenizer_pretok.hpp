#pragma once
// Pre-tokenizers for byte-level BPE: a sequence of PCRE2 regexes (UTF + UCP, JIT)
// chosen by the tokenizer.ggml.pre name. Each regex splits every piece left by the
// previous one into its matches and the unmatched gaps between them (both kept).
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::detail {

// A piece of the input text: [begin, begin + size).
struct Span {
  size_t begin = 0;
  size_t size = 0;
};

class PreTokenizer {
 public:
  // nullptr when `name` is not a known pre-tokenizer.
  static std::unique_ptr<PreTokenizer> create(std::string_view name);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Splits `text` (any bytes; invalid UTF-8 never matches a regex and ends up in gap
  // pieces) into consecutive non-empty pieces covering it. Thread-safe.
  void split(std::string_view text, std::vector<Span>& out) const;

  // Whether a whole pre-token that is a vocab token is emitted without merging.
  bool ignore_merges() const { return ignore_merges_; }
  // Default for tokenizer.ggml.add_bos_token when the key is absent.
  bool default_add_bos() const { return add_bos_; }

 private:
  struct Regex;
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
  bool add_bos_ = false;
};

// The pieces of `text` under pre-tokenizer `pre` (for tests). Throws Error(BadInput)
// for an unknown name.
std::vector<std::string> pretokenize(std::string_view pre, std::string_view text);

}  // namespace tandem::detail
