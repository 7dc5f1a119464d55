// make-model with K-quant matrix types (super-blocks of 256): shapes whose rows are not
// whole super-blocks are refused naming the flag at fault; whole ones write a model
// that the other commands load.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "support/test_paths.hpp"

using tandem::test::run;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

TEST(CliKQuant, RowsOfPartSuperBlocksAreRefusedNamingTheFlag) {
  // The tiny preset's D is 288 (not a multiple of 256).
  for (const char* type : {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k"}) {
    SCOPED_TRACE(type);
    const auto r = run(tandem_bin() + " make-model --preset tiny --type " + type +
                       " --vocab-size 64 -o " + temp_dir() + "/k.gguf 2>&1");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("--dim"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("256"), std::string::npos) << r.out;
  }
  // D whole, F not.
  const auto r = run(tandem_bin() + " make-model --type q4_k --vocab-size 64 --dim 256 --heads 4 "
                     "--kv-heads 2 --ff 640 -o " + temp_dir() + "/k.gguf 2>&1");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--ff"), std::string::npos) << r.out;
}

TEST(CliKQuant, WholeSuperBlocksWriteALoadableModel) {
  const std::string path = temp_dir() + "/q4k.gguf";
  const auto w = run(tandem_bin() + " make-model --type q4_k --vocab-size 64 --dim 256 "
                     "--heads 4 --kv-heads 2 --ff 512 --layers 1 -o " + path + " 2>&1");
  ASSERT_EQ(w.code, 0) << w.out;
  EXPECT_NE(w.out.find("q4_k"), std::string::npos) << w.out;
  const auto b = run(tandem_bin() + " bench -m " + path + " -p 16 -n 2 -r 1 -t 1 2>&1");
  EXPECT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("pp16"), std::string::npos) << b.out;
}

// --recipe: each tensor's type by its role and layer, falling back to blocks of 32 where
// super-blocks do not divide the rows (the tiny preset: D 288, F 768); the model loads.
TEST(CliKQuant, RecipeMixesTypesPerTensor) {
  const std::string path = temp_dir() + "/mix.gguf";
  const auto w = run(tandem_bin() + " make-model --recipe q4_k_m --vocab-size 64 -o " + path +
                     " 2>/dev/null");
  ASSERT_EQ(w.code, 0) << w.out;
  const auto info = run(tandem_bin() + " info -m " + path + " 2>&1");
  ASSERT_EQ(info.code, 0) << info.out;
  const auto type_of = [&](const std::string& tensor) {
    const size_t at = info.out.find("  " + tensor + " ");
    if (at == std::string::npos) return std::string("missing");
    const size_t b = info.out.find_first_not_of(' ', at + tensor.size() + 2);
    return info.out.substr(b, info.out.find(' ', b) - b);
  };
  EXPECT_EQ(type_of("output.weight"), "q8_0");          // Q6_K rows of 288
  EXPECT_EQ(type_of("blk.0.attn_v.weight"), "q5_0");    // Q4_K rows of 288
  EXPECT_EQ(type_of("blk.2.attn_v.weight"), "q8_0");    // a layer with more bits
  EXPECT_EQ(type_of("blk.2.ffn_down.weight"), "q6_k");  // rows of F = 768
  EXPECT_EQ(type_of("blk.1.ffn_down.weight"), "q4_k");
  EXPECT_EQ(type_of("blk.1.attn_norm.weight"), "f32");
  const auto g = run(tandem_bin() + " generate -m " + path + " --ids 1,2,3 -n 4 -t 1 2>&1");
  EXPECT_EQ(g.code, 0) << g.out;
  const auto bad = run(tandem_bin() + " make-model --recipe q4_k_x --vocab-size 64 -o " + path +
                       " 2>&1");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("--recipe 'q4_k_x'"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("q5_k_m"), std::string::npos) << bad.out;
}
