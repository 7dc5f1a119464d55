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
