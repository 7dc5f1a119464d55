#pragma once
// Tokenizer built from GGUF metadata (tokenizer.ggml.*): SentencePiece-style
// ("llama") and byte-level BPE ("gpt2") with the pre-tokenizer named by
// tokenizer.ggml.pre.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::gguf {
class File;
}

namespace tandem {

class Tokenizer {
 public:
  // Throws Error(BadInput) naming the file and key for missing/invalid metadata
  // or an unknown tokenizer model / pre-tokenizer.
  static Tokenizer from_gguf(const gguf::File& f);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text`. add_bos: prepend BOS when the vocabulary asks for it
  // (tokenizer.ggml.add_bos_token, default true for llama, false for gpt2). Tokens the
  // vocabulary marks user-defined are matched in the raw text before the pre-tokenizer
  // and encoder see it (longest first); with parse_special, control tokens too (the
  // text of a chat template's markers becomes those tokens).
  std::vector<int32_t> encode(std::string_view text, bool add_bos,
                              bool parse_special = false) const;

  // Raw bytes of one token as it appears in text (SPM: U+2581 -> space, <0xNN> byte
  // tokens -> that byte; BPE: byte-level mapping undone). Control tokens (BOS, EOS,
  // ...) give "" unless `special` is true (then their text).
  std::string piece(int32_t id, bool special = false) const;
  // Text of a sequence of ids (pieces concatenated; for SPM the one leading space
  // that encoding added is removed when the first token is at the text start).
  std::string decode(std::span<const int32_t> ids, bool special = false) const;

  int32_t n_vocab() const;
  int32_t bos() const;  // -1 when none
  int32_t eos() const;  // -1 when none
  // True for end-of-generation tokens (EOS, EOT, ...).
  bool is_eog(int32_t id) const;
  std::string_view model() const;  // "llama" or "gpt2"
  std::string_view pre() const;    // pre-tokenizer name ("default" when absent)

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
