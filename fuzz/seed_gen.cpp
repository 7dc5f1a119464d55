// Seed-corpus generator (used by scripts/fuzz.sh):
//   fuzz_seed_gen models OUT_DIR          gguf_reader, model_loader
//   fuzz_seed_gen texts OUT_DIR MODE FILE.inp
//                                         tokenizer_*: each text of a llama.cpp vocab test
//                                         file (texts separated by "\n__ggml_vocab_test__\n"),
//                                         prefixed by the mode byte MODE (0-255), plus a few
//                                         id lists
//   fuzz_seed_gen cli OUT_DIR             cli_numbers: --ids, --sp and size texts
// `models` writes two tiny vocabulary-only GGUF files (vocab-spm: SentencePiece-style, 300 tokens;
// vocab-gpt2: byte-level BPE with merges, 269 tokens) and small valid models made by the
// generator of `tandem make-model` (write_synthetic_model; --vocab-size 64 --dim 32
// --layers 1 --heads 2 --kv-heads 1 --ff 64) in each tensor type, with and without a
// tokenizer, qwen2 with Q/K/V biases and a tied output. Files are named seed-* (not
// *.gguf: the repository ignores *.gguf).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <exception>
#include <string>
#include <vector>

#include "model/tokenizer_vocab.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/synth.hpp"

using tandem::gguf::Value;
using tandem::gguf::ValueType;

namespace {

const char* const kWords[] = {"the", "and", "he", "th", "an", "nd", "in", "on", "er", "re",
                              "at", "it", "is", "or", "es", "ing", "ion", "upon", "time",
                              "once", "hello", "world", "a", "e", "o", "t", "h", "n", "d", "s"};

Value strings(const std::vector<std::string>& v) {
  std::vector<Value> items;
  for (const auto& s : v) items.push_back(Value::str(s));
  return Value::array(ValueType::STRING, std::move(items));
}

void write_spm(const std::string& path) {
  const std::string sp = "\xE2\x96\x81";  // U+2581
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    tokens.push_back(name);
    types.push_back(6);
  }
  tokens.push_back(sp);
  types.push_back(1);
  for (const char* w : kWords) {
    tokens.push_back(w);
    types.push_back(1);
    if (tokens.size() < 300) {
      tokens.push_back(sp + w);
      types.push_back(1);
    }
  }
  tokens.resize(300, "<unused>");
  types.resize(300, 5);
  std::vector<Value> scores, ttypes;
  for (size_t i = 0; i < tokens.size(); ++i) {
    scores.push_back(Value::f32(-float(i)));
    ttypes.push_back(Value::i32(types[i]));
  }
  tandem::gguf::Writer w;
  w.set("general.architecture", Value::str("llama"));
  w.set("tokenizer.ggml.model", Value::str("llama"));
  w.set("tokenizer.ggml.tokens", strings(tokens));
  w.set("tokenizer.ggml.scores", Value::array(ValueType::F32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", Value::array(ValueType::I32, std::move(ttypes)));
  w.set("tokenizer.ggml.bos_token_id", Value::u32(1));
  w.set("tokenizer.ggml.eos_token_id", Value::u32(2));
  w.set("tokenizer.ggml.unknown_token_id", Value::u32(0));
  w.set("tokenizer.ggml.add_bos_token", Value::boolean(true));
  w.write(path);
}

void write_gpt2(const std::string& path) {
  const auto& map = tandem::detail::byte_to_unicode();
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(map[b]);
  const std::string G = map[' '];  // "Ġ"
  std::vector<std::string> merges = {G + " t", "t h", "h e", G + "t he", "a n", "an d",
                                     G + " a", G + "a nd", "i n", "in g", "o n", "e r"};
  for (const auto& m : merges) {
    const auto sp = m.find(' ');
    tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
  }
  tokens.push_back("<|endoftext|>");
  std::vector<Value> ttypes;
  for (size_t i = 0; i < tokens.size(); ++i) ttypes.push_back(Value::i32(i + 1 == tokens.size() ? 3 : 1));
  tandem::gguf::Writer w;
  w.set("general.architecture", Value::str("llama"));
  w.set("tokenizer.ggml.model", Value::str("gpt2"));
  w.set("tokenizer.ggml.pre", Value::str("gpt2"));
  w.set("tokenizer.ggml.tokens", strings(tokens));
  w.set("tokenizer.ggml.token_type", Value::array(ValueType::I32, std::move(ttypes)));
  w.set("tokenizer.ggml.merges", strings(merges));
  w.set("tokenizer.ggml.bos_token_id", Value::u32(uint32_t(tokens.size() - 1)));
  w.set("tokenizer.ggml.eos_token_id", Value::u32(uint32_t(tokens.size() - 1)));
  w.write(path);
}

}  // namespace

void write_models(const std::string& dir) {
  struct Variant {
    const char* name;
    tandem::DType type;
    const char* arch;
    const char* vocab;
    bool bias, tied;
  };
  using tandem::DType;
  const Variant variants[] = {
      {"f32", DType::F32, "llama", "", false, false},
      {"f16", DType::F16, "llama", "", false, false},
      {"bf16", DType::BF16, "llama", "", false, false},
      {"q8_0", DType::Q8_0, "llama", "", false, false},
      {"q4_0", DType::Q4_0, "llama", "", false, false},
      {"qwen2-bias-tied-f16", DType::F16, "qwen2", "", true, true},
      {"mistral-q8_0", DType::Q8_0, "mistral", "", false, true},
      {"spm-f16", DType::F16, "llama", "vocab-spm", false, false},
      {"gpt2-q4_0", DType::Q4_0, "llama", "vocab-gpt2", false, true},
  };
  for (const Variant& v : variants) {
    tandem::SynthSpec s;
    s.arch = v.arch;
    s.n_embd = 32;
    s.n_layer = 1;
    s.n_head = 2;
    s.n_head_kv = 1;
    s.n_ff = 64;
    s.n_ctx = 256;
    s.type = v.type;
    s.qkv_bias = v.bias;
    s.tied_output = v.tied;
    if (*v.vocab)
      s.vocab_path = dir + "/seed-" + v.vocab;
    else
      s.n_vocab = 64;
    tandem::write_synthetic_model(s, dir + "/seed-model-" + v.name);
  }
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error(path + ": cannot write");
}

void write_texts(const std::string& dir, int mode, const std::string& inp) {
  std::ifstream in(inp, std::ios::binary);
  if (!in) throw std::runtime_error(inp + ": cannot open");
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string sep = "\n__ggml_vocab_test__\n";
  const std::string m(1, char(mode));
  size_t pos = 0;
  int k = 0;
  for (size_t next; (next = all.find(sep, pos)) != std::string::npos; pos = next + sep.size())
    write_file(dir + "/seed-text-" + std::to_string(mode) + "-" + std::to_string(k++),
               m + all.substr(pos, next - pos));
  // Id lists: mode 1 (ids mod V) and mode 2 (raw ids, one out of range), same vocab bit.
  const auto ids = [&](int op, std::initializer_list<uint32_t> v) {
    std::string b(1, char((mode & ~3) | op));
    for (uint32_t x : v) b.append(reinterpret_cast<const char*>(&x), 4);
    return b;
  };
  write_file(dir + "/seed-ids-" + std::to_string(mode) + "-mod", ids(1, {0, 1, 2, 13, 100, 1000, 70000}));
  write_file(dir + "/seed-ids-" + std::to_string(mode) + "-raw", ids(2, {1, 2, 300, 0xFFFFFFFFu}));
}

void write_cli(const std::string& dir) {
  // Byte 0: the parser (0 --ids, 1 --sp with byte 1 + 1 ranks, 2 sizes, 3 format_size,
  // 4/5 the bounded reader through a file/pipe with byte 1 as the limit, 6 a bounded
  // number with byte 1 picking the bounds, 7 a bounded list, byte 2 the most items).
  const auto ids = [](const char* t) { return std::string(1, '\0') + t; };
  const auto sp = [](int ranks, const char* t) { return std::string{'\1', char(ranks - 1)} + t; };
  const auto size = [](const char* t) { return std::string(1, '\2') + t; };
  const std::string texts[] = {
      ids("1,2,3"), ids(" 0 1  2,,7 "), ids("2147483647"),
      sp(4, "ring"), sp(2, "zigzag"), sp(4, "ulysses"), sp(4, "hybrid:2x2"), sp(8, "pass-q"),
      sp(1, "auto"), size("4G"), size(" 512MiB"), size("1.5GB"), size("1048576"),
      size("2 kib"), std::string(1, '\3') + std::string("\x00\x00\x00\x00\x00\x00\xF0\x41", 8),
      std::string{'\4', '\20'} + "Once upon a time", std::string{'\4', '\4'} + "Once upon",
      std::string{'\5', '\20'} + "Once upon a time", std::string{'\5', '\4'} + "Once upon",
      std::string{'\6', '\0'} + "4096", std::string{'\6', '\1'} + "1099511627776",
      std::string{'\6', '\3'} + "-5", std::string{'\6', '\5'} + "010",
      std::string{'\7', '\14', '\3'} + "256,1024,4096", std::string{'\7', '\13', '\0'} + "2,4"};
  int k = 0;
  for (const auto& t : texts) write_file(dir + "/seed-cli-" + std::to_string(k++), t);
}

int usage() {
  std::fprintf(stderr,
               "usage: fuzz_seed_gen models OUT_DIR | texts OUT_DIR MODE FILE.inp | cli OUT_DIR\n");
  return 2;
}

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string cmd = argv[1], dir = argv[2];
  try {
    if (cmd == "models" && argc == 3) {
      write_spm(dir + "/seed-vocab-spm");
      write_gpt2(dir + "/seed-vocab-gpt2");
      write_models(dir);
    } else if (cmd == "texts" && argc == 5) {
      write_texts(dir, std::atoi(argv[3]) & 255, argv[4]);
    } else if (cmd == "cli" && argc == 3) {
      write_cli(dir);
    } else {
      return usage();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_seed_gen: %s\n", e.what());
    return 1;
  }
  return 0;
}
