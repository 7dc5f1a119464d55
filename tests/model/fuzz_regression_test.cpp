// Replays the inputs kept under tests/fuzz_regressions/<target>/ (crashes found by the
// fuzz targets of fuzz/, since fixed) through the same entry functions the fuzz targets
// call, so that a regression fails the normal suite. scripts/fuzz.sh runs the fuzzers.
#include <gtest/gtest.h>

#include "../../fuzz/entries.hpp"
#include "../../fuzz/replay.hpp"
#include "support/test_paths.hpp"
#include "tandem/model/synth.hpp"

// The entry functions are compiled into this test (the fuzz library itself is built only
// in the clang fuzz configuration).
#include "../../fuzz/entries_model.cpp"

namespace {

using tandem::fuzz::replay;

TEST(FuzzRegression, GgufReader) { replay("gguf_reader", tandem::fuzz::gguf_reader); }
TEST(FuzzRegression, ModelLoader) { replay("model_loader", tandem::fuzz::model_loader); }
TEST(FuzzRegression, TokenizerSpm) { replay("tokenizer_spm", tandem::fuzz::tokenizer_spm); }
TEST(FuzzRegression, TokenizerBpe) { replay("tokenizer_bpe", tandem::fuzz::tokenizer_bpe); }

// The entries themselves accept what they must: a valid model and shipped-vocabulary
// texts pass; out-of-range ids are refused with Error(BadInput), never a crash.
TEST(FuzzRegression, EntriesAcceptValidInputs) {
  const std::string text = std::string(1, '\0') + "Hello world! \xE2\x96\x81 caf\xC3\xA9 \xFF 123";
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  EXPECT_NO_THROW(tandem::fuzz::tokenizer_spm(p, text.size()));
  EXPECT_NO_THROW(tandem::fuzz::tokenizer_bpe(p, text.size()));
  const uint8_t raw_ids[] = {2, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F};  // 1 and 2^31-1: refused
  EXPECT_NO_THROW(tandem::fuzz::tokenizer_spm(raw_ids, sizeof raw_ids));
  EXPECT_NO_THROW(tandem::fuzz::tokenizer_bpe(raw_ids, sizeof raw_ids));
  const uint8_t junk[] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 1};
  EXPECT_NO_THROW(tandem::fuzz::gguf_reader(junk, sizeof junk));
  EXPECT_NO_THROW(tandem::fuzz::model_loader(junk, sizeof junk));

  tandem::SynthSpec s;
  s.n_embd = 32, s.n_layer = 1, s.n_head = 2, s.n_head_kv = 1, s.n_ff = 64, s.n_ctx = 256;
  s.type = tandem::DType::Q4_0;
  s.vocab_path = tandem::test::shared_path("vocab/ggml-vocab-llama-spm.gguf");
  const std::string path = tandem::test::temp_dir() + "/fuzz-entry-model.gguf";
  tandem::write_synthetic_model(s, path);
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_NO_THROW(tandem::fuzz::gguf_reader(bytes.data(), bytes.size()));
  EXPECT_NO_THROW(tandem::fuzz::model_loader(bytes.data(), bytes.size()));
}

}  // namespace
