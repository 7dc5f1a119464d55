// Command-line errors: every bad flag, value or file exits with code 2 and a message
// that says what is wrong (and, for usage errors, points at --help).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "support/test_paths.hpp"

using tandem::test::run;
using tandem::test::shared_path;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

std::string tiny() { return shared_path("models/tiny-f16.gguf"); }

// Runs `tandem ARGS`, keeping only stderr.
tandem::test::RunResult run_stderr(const std::string& args) {
  return run("{ " + tandem_bin() + " " + args + " 2>&1 >/dev/null; }");
}

// A usage error: exit 2, the message names `needle` and mentions --help.
void expect_usage_error(const std::string& args, const std::string& needle) {
  SCOPED_TRACE("tandem " + args);
  const auto r = run_stderr(args);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--help"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << r.out;
  EXPECT_EQ(r.out.rfind("tandem: error: ", 0), 0u) << r.out;
}

// A bad value caught after parsing: exit 2, one line naming `needle`.
void expect_bad_input(const std::string& args, const std::string& needle) {
  SCOPED_TRACE("tandem " + args);
  const auto r = run_stderr(args);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << r.out;
}

}  // namespace

TEST(CliErrors, NoOrUnknownSubcommand) {
  expect_usage_error("", "subcommand");
  expect_usage_error("frobnicate", "subcommand");
}

TEST(CliErrors, UnknownFlag) {
  // Each with its required options, so the unknown flag is the only fault.
  const std::string m = " -m " + tiny();
  const std::vector<std::string> valid = {
      "make-model --type f16 --vocab-size 64 -o " + temp_dir() + "/flag.gguf",
      "info" + m,
      "tokenize -p hi" + m,
      "generate -p hi" + m,
      "logits --ids 1,2 --out " + temp_dir() + "/flag.f32" + m,
  };
  for (const auto& args : valid) expect_usage_error(args + " --no-such-flag", "--no-such-flag");
  EXPECT_FALSE(std::filesystem::exists(temp_dir() + "/flag.gguf"));
}

TEST(CliErrors, MissingRequiredOption) {
  for (const char* sub : {"info", "tokenize", "generate", "logits"})
    expect_usage_error(sub, "--model");
  expect_usage_error("make-model --vocab-size 64 -o x.gguf", "--type");
  expect_usage_error("make-model --type f16 --vocab-size 64", "--output");
  const auto r = run_stderr("make-model --type f16 -o " + temp_dir() + "/novocab.gguf");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--vocab-size"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--help"), std::string::npos) << r.out;
}

TEST(CliErrors, MissingFile) {
  const std::string missing = temp_dir() + "/no-such-model.gguf";
  const std::vector<std::string> subs = {"info", "tokenize -p hi", "generate -p hi",
                                         "logits --ids 1,2 --out " + temp_dir() + "/l.f32"};
  // A missing input file is a usage error: named, with a pointer to --help.
  for (const auto& sub : subs) expect_usage_error(sub + " -m " + missing, missing);
  expect_usage_error("make-model --type f16 --vocab " + missing + " -o " + temp_dir() + "/m.gguf",
                     missing);
  expect_bad_input("make-model --type f16 --vocab-size 64 -o " + temp_dir() + "/no/dir/m.gguf",
                   "no/dir");
  EXPECT_FALSE(std::filesystem::exists(temp_dir() + "/m.gguf"));
}

TEST(CliErrors, BadNumbers) {
  const std::string m = " -m " + tiny();
  expect_usage_error("generate" + m + " -p hi -n abc", "-n");
  expect_usage_error("generate" + m + " -p hi -n -5", "-n");
  expect_usage_error("generate" + m + " -p hi --seed -1", "--seed");
  expect_usage_error("generate" + m + " -p hi --top-p 2", "--top-p");
  expect_usage_error("generate" + m + " -p hi --temp nan-ish", "--temp");
  expect_usage_error("generate" + m + " -p hi --top-k 1.5", "--top-k");
  expect_usage_error("generate" + m + " -p hi -t 0", "--threads");
  expect_usage_error("logits" + m + " --ids 1,2 --last abc", "--last");
  expect_usage_error("logits" + m + " --random-tokens 0", "--random-tokens");
  const std::string out = " -o " + temp_dir() + "/bad.gguf";
  expect_usage_error("make-model --type f16 --vocab-size abc" + out, "--vocab-size");
  expect_usage_error("make-model --type f16 --vocab-size 64 --seed -1" + out, "--seed");
  expect_usage_error("make-model --type f16 --vocab-size 64 --seed 18446744073709551616" + out,
                     "--seed");
  expect_usage_error("make-model --type f16 --vocab-size 64 --dim 2x" + out, "--dim");
  expect_usage_error("make-model --type f16 --vocab-size 64 --rope-base fast" + out, "--rope-base");
  expect_usage_error("make-model --preset huge --type f16 --vocab-size 64" + out, "--preset");
  expect_usage_error("make-model --arch gpt2 --type f16 --vocab-size 64" + out, "--arch");
  EXPECT_FALSE(std::filesystem::exists(temp_dir() + "/bad.gguf"));
}

TEST(CliErrors, ConflictingOptions) {
  expect_usage_error("make-model --type f16 --vocab-size 64 --vocab " + tiny() + " -o x.gguf",
                     "--vocab");
  expect_usage_error("generate -m " + tiny() + " -p hi --ids 1,2", "--ids");
}

TEST(CliErrors, MakeModelShapeValidation) {
  const std::string out = " -o " + temp_dir() + "/shape.gguf";
  const std::string base = "make-model --type f16 --vocab-size 64";
  expect_bad_input(base + " --heads 5" + out, "--heads 5");
  expect_bad_input(base + " --kv-heads 4" + out, "--kv-heads 4");
  expect_bad_input(base + " --heads 4 --kv-heads 8 --dim 64" + out, "--kv-heads 8");
  expect_bad_input(base + " --dim 0" + out, "--dim");
  expect_bad_input(base + " --layers 0" + out, "--layers");
  expect_bad_input(base + " --ff -3" + out, "--ff");
  expect_bad_input(base + " --ctx 0" + out, "--ctx");
  expect_bad_input("make-model --type f16 --vocab-size 0" + out, "--vocab-size");
  expect_bad_input(base + " --rope-base 0" + out, "--rope-base");
  expect_bad_input(base + " --dim 30 --heads 6" + out, "even");
  expect_bad_input("make-model --type q4_0 --vocab-size 64 --ff 100" + out, "--ff");
  expect_bad_input("make-model --type f17 --vocab-size 64" + out, "--type");
  expect_bad_input("make-model --type i32 --vocab-size 64" + out, "--type");
  EXPECT_FALSE(std::filesystem::exists(temp_dir() + "/shape.gguf"));
}

TEST(CliErrors, HelpMentionsTheFlags) {
  const auto r = run(tandem_bin() + " make-model --help");
  EXPECT_EQ(r.code, 0) << r.out;
  for (const char* flag : {"--preset", "--type", "--vocab", "--vocab-size", "--seed", "--arch",
                           "--dim", "--layers", "--heads", "--kv-heads", "--ff", "--ctx",
                           "--rope-base", "--qkv-bias", "--tied-output", "--output"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

// The command reproduces the shared reference file byte for byte.
TEST(MakeModelCli, TinyF16IsTheReferenceFile) {
  const std::string out = temp_dir() + "/tiny-f16.gguf";
  const auto r = run(tandem_bin() + " make-model --preset tiny --type f16 --vocab " +
                     shared_path("vocab/ggml-vocab-llama-spm.gguf") + " -o " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("writing tensor 57/57"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("24407712 parameters"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(out), std::string::npos) << r.out;
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  EXPECT_TRUE(slurp(out) == slurp(tiny())) << "make-model output differs from " << tiny();
}

TEST(MakeModelCli, CustomShapeLoads) {
  const std::string out = temp_dir() + "/custom.gguf";
  const auto r = run(tandem_bin() + " make-model --arch mistral --dim 64 --layers 2 --heads 4 "
                     "--kv-heads 1 --ff 96 --ctx 4096 --rope-base 500000 --tied-output "
                     "--type q8_0 --vocab-size 100 --seed 7 -o " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto info = run(tandem_bin() + " info -m " + out);
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_NE(info.out.find("mistral.rope.freq_base"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("H=4 G=1"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("tied output"), std::string::npos) << info.out;
}
