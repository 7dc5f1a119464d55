// `tandem make-model --arch NAME` for every architecture: the file loads (info), generates
// greedily with the KV cache, and prints the same tokens as recomputing every step.
#include <gtest/gtest.h>

#include "support/test_paths.hpp"

using tandem::test::run;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

const char* kArchs[] = {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"};

std::string make(const std::string& arch, const std::string& extra) {
  const std::string out = temp_dir() + "/cli-" + arch + ".gguf";
  const auto r = run(tandem_bin() + " make-model --arch " + arch +
                     " --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 96 --type f32 "
                     "--vocab-size 120 --seed 5 " + extra + " -o " + out);
  EXPECT_EQ(r.code, 0) << r.out;
  return out;
}

// The generated ids (the first line of the output; timings follow).
std::string generate(const std::string& model, const std::string& extra) {
  const auto r = run(tandem_bin() + " generate -m " + model +
                     " --ids 1,7,30,2,99 -n 12 --temp 0 --show-ids -t 2 " + extra);
  EXPECT_EQ(r.code, 0) << r.out;
  return r.out.substr(0, r.out.find('\n'));
}

TEST(CliArch, EveryArchitectureMakesLoadsAndGenerates) {
  for (const char* arch : kArchs) {
    const std::string m = make(arch, "");
    const auto info = run(tandem_bin() + " info -m " + m);
    ASSERT_EQ(info.code, 0) << info.out;
    EXPECT_NE(info.out.find(std::string("general.architecture")), std::string::npos) << info.out;
    EXPECT_NE(info.out.find(arch), std::string::npos) << info.out;
    const std::string cached = generate(m, "");
    EXPECT_FALSE(cached.empty()) << arch;
    EXPECT_EQ(cached, generate(m, "--no-kv-cache")) << arch;
  }
}

TEST(CliArch, RopeScalingFlags) {
  const std::string l3 = make("llama", "--rope-scaling llama3 --rope-base 500000");
  const auto info = run(tandem_bin() + " info -m " + l3 + " --all");
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_NE(info.out.find("rope_freqs.weight"), std::string::npos) << info.out;
  EXPECT_FALSE(generate(l3, "").empty());
  const std::string lin = make("qwen2", "--rope-scaling linear:2");
  const auto li = run(tandem_bin() + " info -m " + lin);
  EXPECT_NE(li.out.find("qwen2.rope.scaling.factor"), std::string::npos) << li.out;
  const auto bad = run(tandem_bin() + " make-model --arch llama --rope-scaling yarn --type f32 "
                       "--vocab-size 10 -o " + temp_dir() + "/bad.gguf");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("--rope-scaling"), std::string::npos) << bad.out;
  const auto arch = run(tandem_bin() + " make-model --arch gpt2 --type f32 --vocab-size 10 -o " +
                        temp_dir() + "/bad.gguf");
  EXPECT_NE(arch.code, 0);
  EXPECT_NE(arch.out.find("gpt2"), std::string::npos) << arch.out;
}

}  // namespace
