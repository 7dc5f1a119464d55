// Pre-tokenizer regex table and the PCRE2 splitter.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer_pretok.hpp"
#include "model/tokenizer_work.hpp"

#include <pcre2.h>

#include <array>
#include <string>

#include "tandem/core/error.hpp"

namespace tandem::detail {

namespace {

// GPT-2: contractions, letter runs, digit runs, other runs (each with an optional
// leading space), then whitespace.
constexpr const char* kGpt2 =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";

// "default" (a vocabulary that names no known pre-tokenizer): punctuation runs first,
// then the GPT-2 rule without the final whitespace alternative, digit runs, and
// ASCII digit triples, each applied to the pieces of the one before.
constexpr const char* kDefaultPunct = R"re([\p{P}\$\+<=>\^~\|]+)re";
constexpr const char* kGpt2Strict =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re";
constexpr const char* kDigitRuns = R"re(\p{N}+)re";
constexpr const char* kDigitTriples = R"re([0-9][0-9][0-9])re";

// Llama 3 (also DBRX, Smaug, ChatGLM-4): case-insensitive contractions, letters with
// one optional leading non-letter, digits in groups of up to 3, punctuation runs
// taking trailing newlines, newline runs.
constexpr const char* kLlama3 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// Qwen2 / StableLM 2: like Llama 3 with single digits.
constexpr const char* kQwen2 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// Qwen 3.5: Qwen2's rule with combining marks counted as letters.
constexpr const char* kQwen35 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// Tekken (Mistral NeMo): case-aware letter runs (an upper-case run ends where a
// lower-case run starts), single digits, '/' joins trailing newlines.
constexpr const char* kTekken =
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// GPT-4o (o200k): Tekken's case-aware letter runs with a contraction suffix, digits in
// groups of up to 3.
constexpr const char* kGpt4o =
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// DeepSeek LLM: the cased-letter ranges of its tokenizer.json.
constexpr const char* kDeepseekLetters =
    R"re(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)re";
constexpr const char* kDeepseekPunct =
    R"re(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)re";
// CJK ideographs, the 0800-4E00 block range and Hangul.
constexpr const char* kDeepseekCjk =
    R"re([\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+)re";

// DeepSeek V3: ASCII punctuation glued to a following ASCII word, letters with marks,
// punctuation/symbol runs.
constexpr const char* kDeepseekV3 =
    R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// BLOOM / Poro / Viking: everything up to whitespace or sentence punctuation (the
// class also lists '(', '|' and ')' literally).
constexpr const char* kBloom =
    R"re( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{0964}\x{06D4}\x{060C})]+)re";

struct Family {
  std::vector<std::string_view> names;
  std::vector<const char*> regexes;
  bool ignore_merges = false;
  bool add_bos = false;
};

const std::vector<Family>& families() {
  static const std::vector<Family> kFamilies = {
      Family{{"default"}, {kDefaultPunct, kGpt2Strict, kDigitRuns, kDigitTriples}},
      Family{{"gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe", "gigachat",
              "jina-es", "jina-de", "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code"},
             {kGpt2}},
      Family{{"llama3", "llama-v3", "llama-bpe", "falcon3"}, {kLlama3}, true, true},
      Family{{"dbrx", "smaug-bpe", "chatglm-bpe"}, {kLlama3}},
      Family{{"qwen2", "stablelm2", "megrez", "deepseek-r1-qwen"}, {kQwen2}},
      Family{{"qwen35"}, {kQwen35}},
      Family{{"deepseek-llm"},
             {R"re([\r\n])re", kDeepseekLetters, kDeepseekPunct, R"re(\s+$)re", kDeepseekCjk,
              R"re(\p{N}+)re"}},
      Family{
          {"deepseek-coder"},
          {R"re([\r\n])re", R"re(\s?\p{L}+)re", R"re(\s?\p{P}+)re", kDeepseekCjk, R"re(\p{N})re"}},
      Family{{"deepseek-v3"},
             {R"re(\p{N}{1,3})re", R"re([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)re",
              kDeepseekV3}},
      Family{{"falcon"}, {R"re([\p{P}\$\+<=>\^~\|`]+)re", kGpt2, R"re([0-9][0-9][0-9])re"}},
      Family{{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
             {R"re(\p{N})re", kGpt2}},
      Family{{"bloom", "poro-chat", "gpt3-finnish"}, {kBloom}},
      Family{{"viking"}, {kBloom, R"re(\p{N})re"}},
      Family{{"tekken"}, {kTekken}, true, true},
      Family{{"gpt-4o", "llama4"}, {kGpt4o}},
      Family{{"chameleon"},
             {R"re(<sentinel:[0-9]+>)re", R"re((IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z)re",
              R"re(([\t\n]|    |  ))re", R"re(\p{N})re", R"re([\p{P}!-/:-@\[-`{-~])re", kGpt2},
             false,
             true},
  };
  return kFamilies;
}

const Family* find_family(std::string_view name) {
  for (const Family& fam : families())
    for (std::string_view n : fam.names)
      if (name == n) return &fam;
  return nullptr;
}

std::string pcre2_message(int code) {
  std::array<PCRE2_UCHAR, 256> buf{};
  pcre2_get_error_message(code, buf.data(), buf.size());
  return reinterpret_cast<const char*>(buf.data());
}

// Per-call match state: match data plus a JIT stack grown on demand.
class MatchState {
 public:
  MatchState() : md_(pcre2_match_data_create(32, nullptr)) { TD_CHECK(md_ != nullptr); }
  ~MatchState() {
    pcre2_match_data_free(md_);
    if (mctx_) pcre2_match_context_free(mctx_);
    if (stack_) pcre2_jit_stack_free(stack_);
  }
  MatchState(const MatchState&) = delete;
  MatchState& operator=(const MatchState&) = delete;

  // Finds the next match of `code` in subject[start, n); false when none.
  bool next(const pcre2_code* code, const char* subject, size_t n, size_t start, size_t& ms,
            size_t& me) {
    for (;;) {
      int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject), n, start, 0, md_, mctx_);
      if (rc == PCRE2_ERROR_NOMATCH) return false;
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT && stack_size_ < kMaxStack) {
        grow_stack();
        continue;
      }
      if (rc < 0)
        bad_input("pre-tokenizer: regex match failed on the input text: {}", pcre2_message(rc));
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md_);
      ms = ov[0];
      me = ov[1];
      return true;
    }
  }

 private:
  static constexpr size_t kMaxStack = size_t{256} << 20;

  void grow_stack() {
    stack_size_ = stack_size_ == 0 ? (size_t{1} << 20) : stack_size_ * 4;
    if (stack_) pcre2_jit_stack_free(stack_);
    stack_ = pcre2_jit_stack_create(32 * 1024, stack_size_, nullptr);
    if (!mctx_) mctx_ = pcre2_match_context_create(nullptr);
    TD_CHECK(stack_ != nullptr && mctx_ != nullptr);
    pcre2_jit_stack_assign(mctx_, nullptr, stack_);
  }

  pcre2_match_data* md_ = nullptr;
  pcre2_match_context* mctx_ = nullptr;
  pcre2_jit_stack* stack_ = nullptr;
  size_t stack_size_ = 0;
};

}  // namespace

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
};

PreTokenizer::~PreTokenizer() = default;

std::unique_ptr<PreTokenizer> PreTokenizer::create(std::string_view name) {
  const Family* fam = find_family(name);
  if (!fam) return nullptr;
  std::unique_ptr<PreTokenizer> p(new PreTokenizer());
  p->ignore_merges_ = fam->ignore_merges;
  p->add_bos_ = fam->add_bos;
  for (const char* pattern : fam->regexes) {
    auto re = std::make_unique<Regex>();
    int err = 0;
    PCRE2_SIZE err_off = 0;
    re->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY,
                             &err, &err_off, nullptr);
    if (!re->code)
      fail(ErrorKind::Internal, "pre-tokenizer {}: regex does not compile at offset {}: {}", name,
           err_off, pcre2_message(err));
    // JIT is an optimisation: the interpreter runs the same pattern when it fails.
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    p->regexes_.push_back(std::move(re));
  }
  return p;
}

void PreTokenizer::split(std::string_view text, std::vector<Span>& out) const {
  out.clear();
  if (text.empty()) return;
  out.push_back({0, text.size()});
  MatchState state;
  std::vector<Span> next;
  uint64_t calls = 0;
  for (const auto& re : regexes_) {
    next.clear();
    next.reserve(out.size());
    for (const Span& piece : out) {
      const char* subject = text.data() + piece.begin;
      const size_t n = piece.size;
      size_t pos = 0, gap = 0, ms = 0, me = 0;
      while (pos < n && (++calls, state.next(re->code, subject, n, pos, ms, me))) {
        if (me == ms) {
          // Empty match: step over one character and keep searching.
          pos = ms + 1;
          while (pos < n && (static_cast<unsigned char>(subject[pos]) & 0xC0) == 0x80) ++pos;
          continue;
        }
        if (ms > gap) next.push_back({piece.begin + gap, ms - gap});
        next.push_back({piece.begin + ms, me - ms});
        pos = gap = me;
      }
      if (gap < n) next.push_back({piece.begin + gap, n - gap});
    }
    out.swap(next);
  }
  tokenizer_work.regex_calls += calls;
}

std::vector<std::string> pretokenize(std::string_view pre, std::string_view text) {
  auto p = PreTokenizer::create(pre);
  if (!p) bad_input("unknown pre-tokenizer '{}'", pre);
  std::vector<Span> spans;
  p->split(text, spans);
  std::vector<std::string> pieces;
  pieces.reserve(spans.size());
  for (const Span& s : spans) pieces.emplace_back(text.substr(s.begin, s.size));
  return pieces;
}

}  // namespace tandem::detail
