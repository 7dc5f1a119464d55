#pragma once
// Vocabulary tables shared by the SentencePiece-style and byte-level BPE encoders.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/tokenizer_pretok.hpp"

namespace tandem::detail {

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<TokenType> types;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> ids;
  int32_t unk = -1;

  int32_t find(std::string_view text) const {
    auto it = ids.find(text);
    return it == ids.end() ? -1 : it->second;
  }
  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
};

// Raw text split on the tokens that are matched in it before any encoder runs: a
// fragment is text to encode (token -1) or one such token.
struct Fragment {
  size_t begin = 0, size = 0;
  int32_t token = -1;
};
// The ids of a vocabulary's matchable tokens (user-defined, control and unknown, with
// non-empty text), longest text first (ties by id).
std::vector<int32_t> matchable_tokens(const Vocab& v);
// Splits `text` on the matchable tokens, one token at a time in the order given: every
// occurrence in a text fragment, left to right, becomes a token fragment, so a longer
// token takes precedence over a shorter one it overlaps wherever either lies.
// User-defined tokens always match; control and unknown tokens only with parse_special.
void split_on_tokens(std::string_view text, const Vocab& v, const std::vector<int32_t>& matchable,
                     bool parse_special, std::vector<Fragment>& out);

// SentencePiece-style encoder ("llama").
class SpmEncoder {
 public:
  SpmEncoder(const Vocab& vocab, bool add_space_prefix);
  // space_prefix: put a space in front of the text (when the vocabulary adds one and
  // the text starts the input or follows a matched token).
  void encode(std::string_view text, std::vector<int32_t>& out, bool space_prefix) const;
  bool add_space_prefix() const { return add_space_prefix_; }

 private:
  // Id usable as a merge result for `text` (not control/byte/unused), or -1.
  int32_t mergeable(std::string_view text) const;

  const Vocab& vocab_;
  bool add_space_prefix_;
  std::array<int32_t, 256> byte_ids_{};  // <0xNN> tokens, -1 when absent
};

// Byte-level BPE encoder ("gpt2").
class BpeEncoder {
 public:
  // merges: the "left right" strings of tokenizer.ggml.merges, in rank order.
  BpeEncoder(const Vocab& vocab, const std::vector<std::string_view>& merges,
             std::unique_ptr<PreTokenizer> pre);
  ~BpeEncoder();
  void encode(std::string_view text, std::vector<int32_t>& out) const;

  const PreTokenizer& pre() const { return *pre_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t key(int32_t a, int32_t b) {
    return (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
  }
  struct Scratch;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out, Scratch& sc) const;

  const Vocab& vocab_;
  std::unique_ptr<PreTokenizer> pre_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};  // token of each byte's mapped character
};

// GPT-2 byte-level mapping: the UTF-8 text of the code point byte `b` stands for.
const std::array<std::string, 256>& byte_to_unicode();
// Inverse mapping of a code point (-1 when it stands for no byte).
int byte_from_unicode(uint32_t cp);

// Decodes one UTF-8 code point at s[i]; returns its length (1 for an invalid byte,
// with cp set to 0xFFFFFFFF).
size_t utf8_next(std::string_view s, size_t i, uint32_t& cp);
// Appends the UTF-8 encoding of a code point (at most 0x10FFFF).
void append_code_point(std::string& out, uint32_t cp);

}  // namespace tandem::detail
