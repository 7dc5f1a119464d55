// Tokenizer tests: the reference vectors of the shared vocabularies, round trips,
// invalid input, metadata errors, and the pre-tokenizer regexes on hand-checked text.
#include "tandem/model/tokenizer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "model/tokenizer_pretok.hpp"
#include "model/tokenizer_work.hpp"
#include "support/test_paths.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/gguf.hpp"

namespace tandem {
namespace {

using Pieces = std::vector<std::string>;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string vocab_path(const std::string& name) {
  return test::shared_path("vocab/ggml-vocab-" + name + ".gguf");
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

// X.gguf.inp: texts separated by "\n__ggml_vocab_test__\n" (ending with one);
// X.gguf.out: one line of space-prefixed ids per text.
std::vector<Case> load_cases(const std::string& gguf_path) {
  const std::string inp = read_file(gguf_path + ".inp");
  const std::string outp = read_file(gguf_path + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t pos = 0;
  for (size_t at; (at = inp.find(sep, pos)) != std::string::npos; pos = at + sep.size())
    texts.push_back(inp.substr(pos, at - pos));
  EXPECT_EQ(pos, inp.size()) << "input must end with a separator";

  std::vector<Case> cases;
  std::istringstream lines(outp);
  std::string line;
  for (const std::string& text : texts) {
    EXPECT_TRUE(std::getline(lines, line)) << "missing output line";
    Case c{text, {}};
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  EXPECT_FALSE(std::getline(lines, line) && !line.empty()) << "extra output lines";
  return cases;
}

std::string show(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c < 0x20 || c == 0x7F)
      out += fmt::format("\\x{:02X}", c);
    else
      out += static_cast<char>(c);
  }
  return "\"" + out + "\"";
}

Tokenizer load(const std::string& name) {
  return Tokenizer::from_gguf(gguf::File::open(vocab_path(name)));
}

void check_vectors(const std::string& name) {
  const Tokenizer tok = load(name);
  const std::vector<Case> cases = load_cases(vocab_path(name));
  ASSERT_EQ(cases.size(), 46u);
  size_t passed = 0, round_trips = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::vector<int32_t> got = tok.encode(c.text, false);
    EXPECT_EQ(got, c.ids) << name << " case " << i << ": " << show(c.text);
    if (got == c.ids) ++passed;
    // Every case round-trips: BPE maps bytes one to one, and SPM decode drops exactly
    // the one space that encoding put in front.
    const std::string back = tok.decode(c.ids);
    EXPECT_EQ(back, c.text) << name << " round trip of case " << i << ": " << show(c.text);
    if (back == c.text) ++round_trips;
  }
  std::printf("%s: %zu/%zu cases match, %zu round-trip\n", name.c_str(), passed, cases.size(),
              round_trips);
}

// Further vocabularies with test vectors from the peer's source tree (not shipped):
// TANDEM_PEER_VOCAB names its folder of ggml-vocab-*.gguf files with .inp/.out beside
// them. Each vocabulary tandem loads must match every case; one it refuses (a tokenizer
// model it does not implement) is listed with the reason.
TEST(TokenizerVectors, PeerVocabularies) {
  const char* dir = std::getenv("TANDEM_PEER_VOCAB");
  if (!dir) GTEST_SKIP() << "TANDEM_PEER_VOCAB is not set (a folder of ggml-vocab-*.gguf files)";
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".gguf" &&
        std::filesystem::exists(e.path().string() + ".out"))
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty()) << "no vocabulary with test vectors in " << dir;
  for (const auto& path : files) {
    std::optional<Tokenizer> tok;
    try {
      tok.emplace(Tokenizer::from_gguf(gguf::File::open(path.string())));
    } catch (const Error& e) {
      std::printf("%s: not loaded: %s\n", path.filename().c_str(), e.what());
      continue;
    }
    const std::vector<Case> cases = load_cases(path.string());
    size_t passed = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      const std::vector<int32_t> got = tok->encode(cases[i].text, false);
      EXPECT_EQ(got, cases[i].ids) << path.filename() << " case " << i << ": " << show(cases[i].text);
      passed += got == cases[i].ids;
    }
    std::printf("%s: %zu/%zu cases match\n", path.filename().c_str(), passed, cases.size());
  }
}

TEST(TokenizerVectors, LlamaSpm) { check_vectors("llama-spm"); }
TEST(TokenizerVectors, Gpt2) { check_vectors("gpt-2"); }
TEST(TokenizerVectors, LlamaBpe) { check_vectors("llama-bpe"); }

TEST(Tokenizer, SpmMetadataAndBos) {
  const Tokenizer tok = load("llama-spm");
  EXPECT_EQ(tok.model(), "llama");
  EXPECT_EQ(tok.pre(), "default");
  EXPECT_EQ(tok.n_vocab(), 32000);
  EXPECT_EQ(tok.bos(), 1);
  EXPECT_EQ(tok.eos(), 2);
  EXPECT_TRUE(tok.is_eog(2));
  EXPECT_FALSE(tok.is_eog(1));
  EXPECT_FALSE(tok.is_eog(15043));
  EXPECT_EQ(tok.encode("Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(tok.encode("Hello world", false), (std::vector<int32_t>{15043, 3186}));
  EXPECT_EQ(tok.encode("", true), (std::vector<int32_t>{1}));
  EXPECT_TRUE(tok.encode("", false).empty());

  EXPECT_EQ(tok.piece(1), "");
  EXPECT_EQ(tok.piece(1, true), "<s>");
  EXPECT_EQ(tok.piece(15043), " Hello");
  EXPECT_EQ(tok.piece(13), "\n");  // <0x0A>
  const std::vector<int32_t> ids = {1, 15043, 3186, 2};
  EXPECT_EQ(tok.decode(ids), "Hello world");
  EXPECT_EQ(tok.decode(ids, true), "<s> Hello world</s>");
  // Only the space at the start of the text is dropped.
  EXPECT_EQ(tok.decode(std::vector<int32_t>{3186, 15043}), "world Hello");
  EXPECT_THROW(tok.piece(32000), Error);
  EXPECT_THROW(tok.piece(-1), Error);
}

TEST(Tokenizer, Gpt2MetadataAndBos) {
  const Tokenizer tok = load("gpt-2");
  EXPECT_EQ(tok.model(), "gpt2");
  EXPECT_EQ(tok.pre(), "gpt-2");
  EXPECT_EQ(tok.n_vocab(), 50257);
  EXPECT_EQ(tok.bos(), 50256);
  EXPECT_EQ(tok.eos(), 50256);
  EXPECT_TRUE(tok.is_eog(50256));
  // No add_bos_token key: GPT-2 adds no BOS.
  EXPECT_EQ(tok.encode("Hello world", true), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(tok.piece(995), " world");
  EXPECT_EQ(tok.piece(198), "\n");
}

TEST(Tokenizer, LlamaBpeMetadataAndBos) {
  const Tokenizer tok = load("llama-bpe");
  EXPECT_EQ(tok.model(), "gpt2");
  EXPECT_EQ(tok.pre(), "llama-bpe");
  EXPECT_EQ(tok.n_vocab(), 128256);
  EXPECT_EQ(tok.bos(), 128000);
  EXPECT_EQ(tok.eos(), 128001);
  // Llama 3 adds BOS when the key is absent.
  EXPECT_EQ(tok.encode("Hello world", true), (std::vector<int32_t>{128000, 9906, 1917}));
  EXPECT_EQ(tok.encode("Hello world", false), (std::vector<int32_t>{9906, 1917}));
  EXPECT_TRUE(tok.is_eog(128001));
  EXPECT_TRUE(tok.is_eog(128009));  // <|eot_id|>, a control token
  EXPECT_FALSE(tok.is_eog(128000));
  EXPECT_EQ(tok.piece(128000), "");
  EXPECT_EQ(tok.piece(128000, true), "<|begin_of_text|>");
  const std::vector<int32_t> ids = {128000, 9906, 1917, 128009};
  EXPECT_EQ(tok.decode(ids), "Hello world");
  EXPECT_EQ(tok.decode(ids, true), "<|begin_of_text|>Hello world<|eot_id|>");
}

// Random byte strings, many of them invalid UTF-8.
std::vector<std::string> random_texts() {
  std::mt19937 rng(1234);
  std::vector<std::string> texts = {"\xFF",
                                    "\xC3",
                                    "a\x80z",
                                    "\xE2\x82",
                                    "\xF0\x9F\x98",
                                    "\xED\xA0\x80",
                                    "\xC0\xAF",
                                    "x \xFE\xFF y\n\xC3(",
                                    std::string("a\0b", 3),
                                    "\xF4\x90\x80\x80"};
  const std::string alphabet = " \n\ta1'.,\xC3\xA9\xE4\xB8\x80\xF0\x9F\x98\x81";
  for (int i = 0; i < 300; ++i) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) {
      // Half the bytes random, half from a small alphabet that forms words and UTF-8.
      c = (rng() & 1) ? static_cast<char>(rng() & 0xFF) : alphabet[rng() % alphabet.size()];
    }
    texts.push_back(std::move(s));
  }
  return texts;
}

TEST(Tokenizer, InvalidUtf8RoundTripsBpe) {
  for (const char* name : {"gpt-2", "llama-bpe"}) {
    const Tokenizer tok = load(name);
    for (const std::string& text : random_texts()) {
      const std::vector<int32_t> ids = tok.encode(text, false);
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.n_vocab());
      EXPECT_EQ(tok.decode(ids), text) << name << ": " << show(text);
    }
  }
}

TEST(Tokenizer, InvalidUtf8ByteFallbackSpm) {
  const Tokenizer tok = load("llama-spm");
  // A lone invalid byte becomes its <0xNN> token after the space prefix.
  EXPECT_EQ(tok.encode("\xFF", false), (std::vector<int32_t>{29871, 3 + 0xFF}));
  for (const std::string& text : random_texts()) {
    const std::vector<int32_t> ids = tok.encode(text, false);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.n_vocab());
    // The bytes survive (no U+2581 in these inputs, which would decode as a space).
    EXPECT_EQ(tok.decode(ids), text) << show(text);
  }
}

// Writes the metadata of a shared vocabulary with some keys changed, then loads it.
void expect_load_error(const std::string& name, const std::string& key, gguf::Value value,
                       const std::string& expect_in_message) {
  gguf::Writer w;
  w.copy_metadata(gguf::File::open(vocab_path(name)));
  w.set(key, std::move(value));
  const std::string path = test::temp_dir() + "/bad-" + name + ".gguf";
  w.write(path);
  const gguf::File f = gguf::File::open(path);
  try {
    Tokenizer::from_gguf(f);
    ADD_FAILURE() << "no error for " << key;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
    EXPECT_NE(msg.find(expect_in_message), std::string::npos) << msg;
  }
}

TEST(Tokenizer, MetadataErrors) {
  expect_load_error("gpt-2", "tokenizer.ggml.pre", gguf::Value::str("no-such-pre"), "no-such-pre");
  expect_load_error("gpt-2", "tokenizer.ggml.model", gguf::Value::str("bert"), "bert");
  expect_load_error("gpt-2", "tokenizer.ggml.bos_token_id", gguf::Value::u32(50257), "50257");
  expect_load_error("llama-spm", "tokenizer.ggml.eos_token_id", gguf::Value::i32(-1), "-1");
  expect_load_error("llama-spm", "tokenizer.ggml.scores",
                    gguf::Value::array(gguf::ValueType::F32, {gguf::Value::f32(0)}), "1");
  expect_load_error("llama-spm", "tokenizer.ggml.token_type",
                    gguf::Value::array(gguf::ValueType::I32, {gguf::Value::i32(1)}), "1");
  expect_load_error("llama-spm", "tokenizer.ggml.tokens",
                    gguf::Value::array(gguf::ValueType::I32, {gguf::Value::i32(1)}), "string");
  expect_load_error("gpt-2", "tokenizer.ggml.merges", gguf::Value::str("x"), "");
}

TEST(Tokenizer, MissingKeys) {
  gguf::Writer w;
  w.set("general.architecture", gguf::Value::str("llama"));
  const std::string path = test::temp_dir() + "/no-tokenizer.gguf";
  w.write(path);
  const gguf::File f = gguf::File::open(path);
  try {
    Tokenizer::from_gguf(f);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model"), std::string::npos) << e.what();
  }
}

// A small BPE vocabulary whose merges reference missing tokens (skipped) and whose
// add_bos_token key overrides the default.
TEST(Tokenizer, SmallBpeVocab) {
  gguf::Writer w;
  std::vector<gguf::Value> tokens, merges;
  for (const char* t : {"a", "b", "c", "ab", "abc", "<bos>", "\u0120", "\u0120a"})
    tokens.push_back(gguf::Value::str(t));
  for (const char* m : {"a b", "x y", "ab c", "a", "\u0120 a", "b q"})
    merges.push_back(gguf::Value::str(m));
  w.set("tokenizer.ggml.model", gguf::Value::str("gpt2"));
  w.set("tokenizer.ggml.pre", gguf::Value::str("gpt2"));
  w.set("tokenizer.ggml.tokens", gguf::Value::array(gguf::ValueType::STRING, tokens));
  w.set("tokenizer.ggml.merges", gguf::Value::array(gguf::ValueType::STRING, merges));
  w.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(5));
  w.set("tokenizer.ggml.add_bos_token", gguf::Value::boolean(true));
  const std::string path = test::temp_dir() + "/small-bpe.gguf";
  w.write(path);
  const Tokenizer tok = Tokenizer::from_gguf(gguf::File::open(path));
  EXPECT_EQ(tok.encode("abc", true), (std::vector<int32_t>{5, 4}));
  EXPECT_EQ(tok.encode("abcab a", false), (std::vector<int32_t>{4, 3, 7}));
  EXPECT_EQ(tok.encode("cba", false), (std::vector<int32_t>{2, 1, 0}));
  // Bytes without a token are dropped (no <unk> in this vocabulary).
  EXPECT_EQ(tok.encode("azb", false), (std::vector<int32_t>{0, 1}));
  EXPECT_FALSE(tok.is_eog(5));
  EXPECT_EQ(tok.eos(), -1);
}

// A shared vocabulary with tokens appended (text, token_type) and metadata keys set,
// written and loaded.
Tokenizer with_added_tokens(const std::string& name,
                            const std::vector<std::pair<std::string, int>>& added,
                            const std::vector<std::pair<std::string, gguf::Value>>& keys = {}) {
  static int serial = 0;
  const gguf::File src = gguf::File::open(vocab_path(name));
  gguf::Writer w;
  w.copy_metadata(src);
  std::vector<gguf::Value> tokens = src.get_array("tokenizer.ggml.tokens").items;
  std::vector<gguf::Value> types = src.get_array("tokenizer.ggml.token_type").items;
  for (const auto& [text, type] : added) {
    tokens.push_back(gguf::Value::str(text));
    types.push_back(gguf::Value::i32(type));
  }
  w.set("tokenizer.ggml.tokens", gguf::Value::array(gguf::ValueType::STRING, tokens));
  w.set("tokenizer.ggml.token_type", gguf::Value::array(gguf::ValueType::I32, types));
  if (src.find("tokenizer.ggml.scores")) {
    std::vector<gguf::Value> scores = src.get_array("tokenizer.ggml.scores").items;
    scores.resize(tokens.size(), gguf::Value::f32(0.0f));
    w.set("tokenizer.ggml.scores", gguf::Value::array(gguf::ValueType::F32, scores));
  }
  for (const auto& [k, v] : keys) w.set(k, v);
  const std::string path = test::temp_dir() + "/added-" + name + "-" + std::to_string(serial++) + ".gguf";
  w.write(path);
  return Tokenizer::from_gguf(gguf::File::open(path));
}

std::vector<int32_t> cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Tokens marked user-defined (type 4) are matched in the raw text before the encoder
// runs; the text around them is encoded as if alone (SPM: a space prefix after a
// matched token, as at the start of the input).
TEST(Tokenizer, UserDefinedTokensMatchFirstSpm) {
  const Tokenizer plain = load("llama-spm");
  const int32_t tool = plain.n_vocab(), spaces = tool + 1;
  const Tokenizer tok = with_added_tokens("llama-spm", {{"<tool>", 4}, {"   ", 4}});
  EXPECT_EQ(tok.encode("Hello<tool>world", false),
            cat({plain.encode("Hello", false), {tool}, plain.encode("world", false)}));
  EXPECT_EQ(tok.encode("<tool><tool>", false), (std::vector<int32_t>{tool, tool}));
  // Three spaces are one token wherever they occur in the raw text.
  EXPECT_EQ(tok.encode("a   b", false),
            cat({plain.encode("a", false), {spaces}, plain.encode("b", false)}));
  // Without the mark the same texts are plain text.
  const Tokenizer normal = with_added_tokens("llama-spm", {{"<tool>", 1}, {"   ", 1}});
  EXPECT_EQ(normal.encode("Hello<tool>world", false), plain.encode("Hello<tool>world", false));
  // The space put in front of the text after the token stays in the decoded text.
  EXPECT_EQ(tok.decode(tok.encode("Hello<tool>world", false)), "Hello<tool> world");
}

// SentencePiece without the space prefix (gemma's vocabularies: add_space_prefix false):
// the text is encoded as written, a leading space is a token of its own text, nothing is
// put in front after a matched token, and decoding keeps every space.
TEST(Tokenizer, SpmWithoutSpacePrefix) {
  const Tokenizer plain = load("llama-spm");
  const int32_t tool = plain.n_vocab();
  const Tokenizer bare = with_added_tokens(
      "llama-spm", {{"<tool>", 4}}, {{"tokenizer.ggml.add_space_prefix", gguf::Value::boolean(false)}});
  EXPECT_EQ(bare.encode(" Hello world", false), plain.encode("Hello world", false));
  EXPECT_NE(bare.encode("Hello world", false), plain.encode("Hello world", false));
  EXPECT_EQ(bare.decode(bare.encode("Hello world", false)), "Hello world");
  EXPECT_EQ(bare.decode(bare.encode(" Hi there", false)), " Hi there");
  EXPECT_EQ(plain.decode(plain.encode(" Hi there", false)), " Hi there");
  EXPECT_EQ(bare.encode("Hello<tool>world", false),
            cat({bare.encode("Hello", false), {tool}, bare.encode("world", false)}));
  EXPECT_EQ(bare.decode(bare.encode("Hello<tool>world", false)), "Hello<tool>world");
}

// A longer matched token takes precedence over a shorter one it overlaps, wherever
// the shorter one starts; control tokens match only when special text is parsed.
TEST(Tokenizer, UserDefinedLongestFirstAndControlOnRequest) {
  const Tokenizer plain = load("gpt-2");
  const int32_t xa = plain.n_vocab(), abc = xa + 1, ctl = xa + 2;
  const Tokenizer tok = with_added_tokens("gpt-2", {{"xa", 4}, {"abc", 4}, {"<c>", 3}});
  EXPECT_EQ(tok.encode("xabc", false), cat({plain.encode("x", false), {abc}}));
  EXPECT_EQ(tok.encode("xa bc", false), cat({{xa}, plain.encode(" bc", false)}));
  EXPECT_EQ(tok.encode("1<c>2", false), plain.encode("1<c>2", false));
  EXPECT_EQ(tok.encode("1<c>2", false, true),
            cat({plain.encode("1", false), {ctl}, plain.encode("2", false)}));
}

// The control tokens of a chat template, parsed from its rendered text (Llama 3 ids).
TEST(Tokenizer, ParsesControlTokensOfChatMarkup) {
  const Tokenizer tok = load("llama-bpe");
  const std::string text = "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>";
  EXPECT_EQ(tok.encode(text, false, true),
            (std::vector<int32_t>{128006, 882, 128007, 271, 6151, 128009}));
  const std::vector<int32_t> as_text = tok.encode(text, false);
  EXPECT_EQ(std::count(as_text.begin(), as_text.end(), 128006), 0);
  EXPECT_EQ(tok.decode(as_text), text);
}

// Long inputs cost work in proportion to their length: the encoders count what they do
// (detail::tokenizer_work: regex searches, vocabulary and merge lookups with the bytes
// hashed, queue pops), and the counts are bounded per byte and grow with the length, not
// faster. Counts, not seconds: the same on a loaded machine and under sanitizers, and a
// quadratic step (a search or lookup that rescans what it has seen) shows as a count that
// grows with the square of the length.
detail::TokenizerWork work_of(const Tokenizer& tok, const std::string& text) {
  detail::tokenizer_work = {};
  const std::vector<int32_t> ids = tok.encode(text, false);
  const detail::TokenizerWork w = detail::tokenizer_work;
  EXPECT_EQ(tok.decode(ids), text);
  return w;
}

void expect_linear(const Tokenizer& tok, const std::string& name, const std::string& unit) {
  SCOPED_TRACE(name);
  const size_t k = 4;
  std::string small, big;
  while (small.size() < (size_t{1} << 17)) small += unit;
  for (size_t i = 0; i < k; ++i) big += small;
  const detail::TokenizerWork a = work_of(tok, small), b = work_of(tok, big);
  std::printf("%-10s %-10s %7zu bytes: work %9llu | %7zu bytes: work %9llu (regex %llu, lookups "
              "%llu, bytes looked up %llu, pops %llu)\n",
              name.c_str(), unit.size() == 1 ? "run" : "text", small.size(),
              static_cast<unsigned long long>(a.total()), big.size(),
              static_cast<unsigned long long>(b.total()),
              static_cast<unsigned long long>(b.regex_calls),
              static_cast<unsigned long long>(b.lookups),
              static_cast<unsigned long long>(b.bytes_looked_up),
              static_cast<unsigned long long>(b.queue_pops));
  EXPECT_GT(a.total(), 0u);
  // Per byte: bounded (measured 1-12 on texts and most runs; about 112 on a run of spaces
  // under SPM, whose lookups hash candidate pieces of up to 2 x 16 U+2581, 96 bytes).
  // Quadratic work on these lengths would be in the tens of thousands.
  EXPECT_LE(b.total(), 256 * big.size());
  // k times the text, at most k times the work (plus 10% for where the pieces fall).
  EXPECT_LE(double(b.total()), 1.1 * double(k) * double(a.total()));
}

TEST(Tokenizer, LongInputsTakeLinearWork) {
  const std::string inp = read_file(vocab_path("llama-bpe") + ".inp");
  for (const char* name : {"llama-spm", "gpt-2", "llama-bpe"}) {
    const Tokenizer tok = load(name);
    expect_linear(tok, name, inp);
    // Long runs that make one huge symbol sequence or pre-token.
    for (char c : {'a', ' ', '7', '\n', '!'}) expect_linear(tok, name, std::string(1, c));
  }
}

// encode/decode are const and may run from several threads at once.
TEST(Tokenizer, ConcurrentEncode) {
  for (const char* name : {"llama-spm", "llama-bpe"}) {
    const Tokenizer tok = load(name);
    const std::vector<Case> cases = load_cases(vocab_path(name));
    std::vector<int> ok(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        bool all = true;
        for (int rep = 0; rep < 20; ++rep)
          for (const Case& c : cases) all = all && tok.encode(c.text, false) == c.ids;
        ok[t] = all;
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(ok, std::vector<int>(4, 1)) << name;
  }
}

// --- pre-tokenizer regexes (expected splits derived by hand from the patterns) ---

// "default" chains four rules: punctuation runs split first (so contractions lose
// their apostrophe), then the GPT-2 rule, then digit runs, then ASCII digit triples.
TEST(PreTokenizer, DefaultChain) {
  const auto p = [](std::string_view t) { return detail::pretokenize("default", t); };
  using P = std::vector<std::string>;
  EXPECT_EQ(p("Hello world"), (P{"Hello", " world"}));
  EXPECT_EQ(p("I'm here"), (P{"I", "'", "m", " here"}));
  EXPECT_EQ(p("hello!!! world"), (P{"hello", "!!!", " world"}));
  EXPECT_EQ(p("abc12345 x"), (P{"abc", "123", "45", " x"}));
  EXPECT_EQ(p("abc123 4567"), (P{"abc", "123", " ", "456", "7"}));
  EXPECT_EQ(p("a+b"), (P{"a", "+", "b"}));
}

Pieces pre(std::string_view name, std::string_view text) { return detail::pretokenize(name, text); }

TEST(PreTokenizer, Gpt2) {
  for (const char* name : {"gpt2", "gpt-2", "mpt", "olmo", "jais"}) {
    EXPECT_EQ(pre(name, "Hello world"), (Pieces{"Hello", " world"})) << name;
    EXPECT_EQ(pre(name, "I'm here"), (Pieces{"I", "'m", " here"})) << name;
    // Contractions are case-sensitive here.
    EXPECT_EQ(pre(name, "'S"), (Pieces{"'", "S"})) << name;
    EXPECT_EQ(pre(name, "  two spaces"), (Pieces{" ", " two", " spaces"})) << name;
    EXPECT_EQ(pre(name, "abc123 4567"), (Pieces{"abc", "123", " 4567"})) << name;
    EXPECT_EQ(pre(name, "hello!!! world"), (Pieces{"hello", "!!!", " world"})) << name;
    EXPECT_EQ(pre(name, "x\n\ny"), (Pieces{"x", "\n", "\n", "y"})) << name;
    EXPECT_EQ(pre(name, "end  "), (Pieces{"end", "  "})) << name;
    EXPECT_EQ(pre(name, "\xD0\xBD\xD0\xB5 \xE4\xB8\xAD\xE6\x96\x87"),
              (Pieces{"\xD0\xBD\xD0\xB5", " \xE4\xB8\xAD\xE6\x96\x87"}))
        << name;
  }
}

TEST(PreTokenizer, Llama3) {
  for (const char* name : {"llama3", "llama-bpe", "dbrx", "smaug-bpe", "chatglm-bpe"}) {
    EXPECT_EQ(pre(name, "12345"), (Pieces{"123", "45"})) << name;
    EXPECT_EQ(pre(name, "3.14"), (Pieces{"3", ".", "14"})) << name;
    EXPECT_EQ(pre(name, "I'M fine"), (Pieces{"I", "'M", " fine"})) << name;
    EXPECT_EQ(pre(name, "(hello)"), (Pieces{"(hello", ")"})) << name;
    EXPECT_EQ(pre(name, "a\n\nb"), (Pieces{"a", "\n\n", "b"})) << name;
    EXPECT_EQ(pre(name, "x  y"), (Pieces{"x", " ", " y"})) << name;
    EXPECT_EQ(pre(name, "ok!!!\n\n"), (Pieces{"ok", "!!!\n\n"})) << name;
    // CJK and Latin letters form one run.
    EXPECT_EQ(pre(name, "\u6211\u60F3apple"), (Pieces{"\u6211\u60F3apple"})) << name;
  }
}

TEST(PreTokenizer, Qwen2) {
  for (const char* name : {"qwen2", "stablelm2"}) {
    EXPECT_EQ(pre(name, "12345"), (Pieces{"1", "2", "3", "4", "5"})) << name;
    EXPECT_EQ(pre(name, "I'M fine"), (Pieces{"I", "'M", " fine"})) << name;
    EXPECT_EQ(pre(name, "a\n\nb"), (Pieces{"a", "\n\n", "b"})) << name;
  }
}

TEST(PreTokenizer, DeepseekCoder) {
  EXPECT_EQ(pre("deepseek-coder", "foo 123\nbar"),
            (Pieces{"foo", " ", "1", "2", "3", "\n", "bar"}));
  EXPECT_EQ(pre("deepseek-coder", "a, b"), (Pieces{"a", ",", " b"}));
}

TEST(PreTokenizer, DeepseekLlm) {
  // "Hello, 世界 123"
  EXPECT_EQ(pre("deepseek-llm", "Hello, \xE4\xB8\x96\xE7\x95\x8C 123"),
            (Pieces{"Hello", ",", " ", "\xE4\xB8\x96\xE7\x95\x8C", " ", "123"}));
  EXPECT_EQ(pre("deepseek-llm", "a\nb"), (Pieces{"a", "\n", "b"}));
}

TEST(PreTokenizer, DeepseekV3) {
  EXPECT_EQ(pre("deepseek-v3", "abc12345def"), (Pieces{"abc", "123", "45", "def"}));
  EXPECT_EQ(pre("deepseek-v3", ".Net is"), (Pieces{".Net", " is"}));
  // Kanji and katakana in one run: 日本語テキスト
  const std::string jp = "\u65E5\u672C\u8A9E\u30C6\u30AD\u30B9\u30C8";
  EXPECT_EQ(pre("deepseek-v3", jp), (Pieces{jp}));
}

TEST(PreTokenizer, Falcon) {
  EXPECT_EQ(pre("falcon", "hello, world 12345"),
            (Pieces{"hello", ",", " world", " ", "123", "45"}));
}

TEST(PreTokenizer, StarcoderFamily) {
  for (const char* name :
       {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"}) {
    EXPECT_EQ(pre(name, "x = 42;"), (Pieces{"x", " =", " ", "4", "2", ";"})) << name;
  }
}

TEST(PreTokenizer, BloomFamily) {
  for (const char* name : {"bloom", "poro-chat"}) {
    EXPECT_EQ(pre(name, "Hello, world. Yes!"), (Pieces{"Hello", ",", " world", ".", " Yes", "!"}))
        << name;
    EXPECT_EQ(pre(name, "a  b"), (Pieces{"a", " ", " b"})) << name;
    EXPECT_EQ(pre(name, "(x)"), (Pieces{"(", "x", ")"})) << name;
    EXPECT_EQ(pre(name, "abc123 x"), (Pieces{"abc123", " x"})) << name;
  }
  EXPECT_EQ(pre("viking", "abc123 x"), (Pieces{"abc", "1", "2", "3", " x"}));
}

TEST(PreTokenizer, Tekken) {
  EXPECT_EQ(pre("tekken", "HelloWorld"), (Pieces{"Hello", "World"}));
  EXPECT_EQ(pre("tekken", "ABCdef"), (Pieces{"ABCdef"}));
  EXPECT_EQ(pre("tekken", "HTML5"), (Pieces{"HTML", "5"}));
  EXPECT_EQ(pre("tekken", "12"), (Pieces{"1", "2"}));
  EXPECT_EQ(pre("tekken", "x/\ny"), (Pieces{"x", "/\n", "y"}));
}

TEST(PreTokenizer, Gpt4o) {
  EXPECT_EQ(pre("gpt-4o", "HelloWorld's 12345"), (Pieces{"Hello", "World's", " ", "123", "45"}));
}

TEST(PreTokenizer, PiecesCoverInput) {
  const char* names[] = {"gpt2",        "llama3",   "qwen2",       "deepseek-llm", "deepseek-coder",
                         "deepseek-v3", "falcon",   "mpt",         "starcoder",    "refact",
                         "command-r",   "olmo",     "dbrx",        "smaug-bpe",    "stablelm2",
                         "jais",        "tekken",   "chatglm-bpe", "gpt-4o",       "bloom",
                         "poro-chat",   "viking",   "smollm",      "codeshell",    "exaone",
                         "minerva-7b",  "chameleon"};
  for (const char* name : names) {
    for (const std::string& text : random_texts()) {
      const Pieces pieces = pre(name, text);
      std::string joined;
      for (const std::string& p : pieces) {
        EXPECT_FALSE(p.empty()) << name;
        joined += p;
      }
      EXPECT_EQ(joined, text) << name;
    }
  }
}

TEST(PreTokenizer, UnknownName) { EXPECT_THROW(pre("no-such-pre", "x"), Error); }

}  // namespace
}  // namespace tandem
