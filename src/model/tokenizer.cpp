// Tokenizer: loading and validating tokenizer.ggml.* metadata, encode/decode.
#include "tandem/model/tokenizer.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <optional>

#include "model/tokenizer_vocab.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/text_file.hpp"
#include "tandem/model/gguf.hpp"

namespace tandem {

namespace {

constexpr int64_t kMaxVocab = int64_t{1} << 24;
// The text limit is the one of files read as text (core/text_file.hpp): symbol indices
// are int32_t and SPM escaping triples spaces, so three times the text must stay below 2^31.
static_assert(3 * kMaxTextBytes < (uint64_t{1} << 31));
constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581

// Control tokens that end a turn in common chat vocabularies, beyond the ids named in
// the metadata.
constexpr std::string_view kEogTexts[] = {"<|eot_id|>", "<|eom_id|>",    "<|im_end|>",
                                          "<|end|>",    "<end_of_turn>", "<|endoftext|>"};

const gguf::Array& array_of(const gguf::File& f, std::string_view key, gguf::ValueType elem) {
  const gguf::Array& a = f.get_array(key);
  if (a.elem != elem)
    bad_input("{}: {} must be an array of {}, found an array of {}", f.path(), key,
              gguf::value_type_name(elem), gguf::value_type_name(a.elem));
  return a;
}

std::optional<bool> find_bool(const gguf::File& f, std::string_view key) {
  const gguf::Value* v = f.find(key);
  if (!v) return std::nullopt;
  if (const bool* b = std::get_if<bool>(&v->v)) return *b;
  if (auto i = v->as_int()) return *i != 0;
  bad_input("{}: {} must be a boolean, found {}", f.path(), key, gguf::value_type_name(v->type));
}

std::optional<int32_t> find_id(const gguf::File& f, std::string_view key, int32_t n_vocab) {
  const gguf::Value* v = f.find(key);
  if (!v) return std::nullopt;
  const auto i = v->as_int();
  if (!i) bad_input("{}: {} must be an integer, found {}", f.path(), key, v->to_string());
  if (*i < 0 || *i >= n_vocab)
    bad_input("{}: {} = {} is out of range (vocabulary of {} tokens)", f.path(), key, *i, n_vocab);
  return static_cast<int32_t>(*i);
}

std::string optional_string(const gguf::File& f, std::string_view key, std::string dflt) {
  const gguf::Value* v = f.find(key);
  if (!v) return dflt;
  const std::string* s = v->as_string();
  if (!s)
    bad_input("{}: {} must be a string, found {}", f.path(), key, gguf::value_type_name(v->type));
  return *s;
}

}  // namespace

struct Tokenizer::Impl {
  detail::Vocab vocab;
  std::string model;
  std::string pre;
  bool spm = false;
  bool add_bos = false;
  int32_t bos = -1, eos = -1;
  std::vector<int32_t> eog;
  std::unique_ptr<detail::SpmEncoder> spm_enc;
  std::unique_ptr<detail::BpeEncoder> bpe_enc;
  std::vector<int32_t> matchable;  // detail::matchable_tokens
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_gguf(const gguf::File& f) {
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  detail::Vocab& v = t.vocab;
  const std::string& path = f.path();

  if (!f.find("tokenizer.ggml.model")) bad_input("{}: missing key tokenizer.ggml.model", path);
  t.model = optional_string(f, "tokenizer.ggml.model", "");
  if (t.model == "llama")
    t.spm = true;
  else if (t.model != "gpt2")
    bad_input(
        "{}: unsupported tokenizer model tokenizer.ggml.model = '{}' (expected 'llama' or 'gpt2')",
        path, t.model);
  t.pre = optional_string(f, "tokenizer.ggml.pre", "default");

  // Tokens, scores and types.
  const gguf::Array& tokens = array_of(f, "tokenizer.ggml.tokens", gguf::ValueType::STRING);
  const auto n_items = static_cast<int64_t>(tokens.items.size());
  if (n_items == 0) bad_input("{}: tokenizer.ggml.tokens is empty", path);
  if (n_items > kMaxVocab)
    bad_input("{}: tokenizer.ggml.tokens has {} tokens (limit {})", path, n_items, kMaxVocab);
  const auto n = static_cast<int32_t>(n_items);
  v.tokens.resize(n);
  v.ids.reserve(n);
  for (int32_t i = 0; i < n; ++i) {
    const std::string* s = tokens.items[i].as_string();
    if (!s) bad_input("{}: tokenizer.ggml.tokens[{}] is not a string", path, i);
    v.tokens[i] = *s;
    if (!s->empty()) v.ids.try_emplace(*s, i);  // the first of duplicate texts wins
  }

  v.scores.assign(n, 0.0f);
  if (f.find("tokenizer.ggml.scores")) {
    const gguf::Array& scores = f.get_array("tokenizer.ggml.scores");
    if (static_cast<int64_t>(scores.items.size()) != n_items)
      bad_input("{}: tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {}", path,
                scores.items.size(), n);
    for (int32_t i = 0; i < n; ++i) {
      const auto x = scores.items[i].as_float();
      if (!x) bad_input("{}: tokenizer.ggml.scores[{}] is not a number", path, i);
      // Non-finite scores would break the merge order; treat them as the lowest.
      v.scores[i] = std::isfinite(*x)
                        ? static_cast<float>(std::clamp(*x, -double{FLT_MAX}, double{FLT_MAX}))
                        : -FLT_MAX;
    }
  }

  v.types.assign(n, detail::TokenType::Normal);
  if (f.find("tokenizer.ggml.token_type")) {
    const gguf::Array& types = f.get_array("tokenizer.ggml.token_type");
    if (static_cast<int64_t>(types.items.size()) != n_items)
      bad_input("{}: tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
                path, types.items.size(), n);
    for (int32_t i = 0; i < n; ++i) {
      const auto x = types.items[i].as_int();
      if (!x) bad_input("{}: tokenizer.ggml.token_type[{}] is not an integer", path, i);
      v.types[i] =
          (*x >= 0 && *x <= 6) ? static_cast<detail::TokenType>(*x) : detail::TokenType::Undefined;
    }
  }

  // Special tokens. SentencePiece vocabularies default to <unk>=0, <s>=1, </s>=2.
  const auto id_or = [&](std::string_view key, int32_t dflt) {
    auto id = find_id(f, key, n);
    return id ? *id : (dflt < n ? dflt : -1);
  };
  t.bos = id_or("tokenizer.ggml.bos_token_id", t.spm ? 1 : -1);
  t.eos = id_or("tokenizer.ggml.eos_token_id", t.spm ? 2 : -1);
  v.unk = id_or("tokenizer.ggml.unknown_token_id", t.spm ? 0 : -1);
  if (t.eos >= 0) t.eog.push_back(t.eos);
  for (std::string_view key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (auto id = find_id(f, key, n)) t.eog.push_back(*id);
  for (std::string_view text : kEogTexts) {
    const int32_t id = v.find(text);
    if (id >= 0 && v.types[id] == detail::TokenType::Control) t.eog.push_back(id);
  }
  std::sort(t.eog.begin(), t.eog.end());
  t.eog.erase(std::unique(t.eog.begin(), t.eog.end()), t.eog.end());

  if (t.spm) {
    const bool space_prefix = find_bool(f, "tokenizer.ggml.add_space_prefix").value_or(true);
    t.spm_enc = std::make_unique<detail::SpmEncoder>(v, space_prefix);
    t.add_bos = find_bool(f, "tokenizer.ggml.add_bos_token").value_or(true);
  } else {
    auto pre = detail::PreTokenizer::create(t.pre);
    if (!pre) bad_input("{}: unknown pre-tokenizer tokenizer.ggml.pre = '{}'", path, t.pre);
    const bool pre_bos = pre->default_add_bos();
    const gguf::Array& merges = array_of(f, "tokenizer.ggml.merges", gguf::ValueType::STRING);
    std::vector<std::string_view> merge_texts(merges.items.size());
    for (size_t i = 0; i < merges.items.size(); ++i) {
      const std::string* s = merges.items[i].as_string();
      if (!s) bad_input("{}: tokenizer.ggml.merges[{}] is not a string", path, i);
      merge_texts[i] = *s;
    }
    t.bpe_enc = std::make_unique<detail::BpeEncoder>(v, merge_texts, std::move(pre));
    t.add_bos = find_bool(f, "tokenizer.ggml.add_bos_token").value_or(pre_bos);
  }
  if (t.bos < 0) t.add_bos = false;
  t.matchable = detail::matchable_tokens(v);
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  if (text.size() > kMaxTextBytes)
    bad_input("text of {} bytes is too long to tokenize (limit {})", text.size(), kMaxTextBytes);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && impl_->add_bos) out.push_back(impl_->bos);
  std::vector<detail::Fragment> frags;
  detail::split_on_tokens(text, impl_->vocab, impl_->matchable, parse_special, frags);
  bool after_token = true;  // the input's start counts as following a token
  for (const detail::Fragment& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_token = true;
      continue;
    }
    const std::string_view part = text.substr(f.begin, f.size);
    if (impl_->spm)
      impl_->spm_enc->encode(part, out, after_token && impl_->spm_enc->add_space_prefix());
    else
      impl_->bpe_enc->encode(part, out);
    after_token = false;
  }
  return out;
}

std::string Tokenizer::piece(int32_t id, bool special) const {
  const detail::Vocab& v = impl_->vocab;
  if (id < 0 || id >= v.size())
    bad_input("token id {} is out of range (vocabulary of {} tokens)", id, v.size());
  const std::string& text = v.tokens[id];
  const auto type = v.types[id];
  if (type == detail::TokenType::Control || type == detail::TokenType::Unknown)
    return special ? text : std::string();
  if (type == detail::TokenType::UserDefined) return text;

  std::string out;
  if (impl_->spm) {
    if (type == detail::TokenType::Byte && text.size() == 6 && text.starts_with("<0x") &&
        text[5] == '>') {
      const auto hex = [](char c) {
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                      : -1;
      };
      const int hi = hex(text[3]), lo = hex(text[4]);
      if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
    }
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      if (std::string_view(text).substr(i, 3) == kSpmSpace) {
        out += ' ';
        i += 3;
      } else {
        out += text[i++];
      }
    }
    return out;
  }
  // Byte-level BPE: each character stands for one byte; others are kept as they are.
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    const size_t len = detail::utf8_next(text, i, cp);
    const int b = detail::byte_from_unicode(cp);
    if (b >= 0)
      out += static_cast<char>(b);
    else
      out.append(text, i, len);
    i += len;
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool special) const {
  std::string out;
  bool at_start = impl_->spm && impl_->spm_enc->add_space_prefix();
  for (int32_t id : ids) {
    std::string p = piece(id, special);
    if (p.empty()) continue;
    // Drop the space prefix that encoding added in front of the text.
    if (at_start && p.front() == ' ') p.erase(0, 1);
    at_start = false;
    out += p;
  }
  return out;
}

int32_t Tokenizer::n_vocab() const { return impl_->vocab.size(); }
int32_t Tokenizer::bos() const { return impl_->bos; }
int32_t Tokenizer::eos() const { return impl_->eos; }
bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(impl_->eog.begin(), impl_->eog.end(), id);
}
std::string_view Tokenizer::model() const { return impl_->model; }
std::string_view Tokenizer::pre() const { return impl_->pre; }

}  // namespace tandem
