// tandem train from the command line: a short run writes its log, checkpoint and report;
// the checkpoint loads as a model; text data goes through the vocabulary's tokenizer; bad
// input is refused naming the flag.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "support/test_paths.hpp"

using tandem::test::read_text;
using tandem::test::run;
using tandem::test::shared_path;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

TEST(CliTrain, PasskeyRunWritesLogCheckpointAndReport) {
  const std::string dir = temp_dir() + "/run", rep = temp_dir() + "/report";
  const auto r = run(tandem_bin() + " train --preset tiny --task passkey --ctx 32 --batch 2 --steps 3 "
                     "--eval-examples 4 -t 2 --out " + dir + " --report " + rep);
  ASSERT_EQ(r.code, 0) << r.out;
  // A progress line per step, and the summary.
  for (const char* s : {"step 1/3", "step 2/3", "step 3/3", "tok/s", "final loss"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  std::ifstream log(dir + "/log.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(log, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.at("step").get<int>(), ++n);
    EXPECT_GT(j.at("loss").get<double>(), 0.0);
    EXPECT_GT(j.at("tokens_per_s").get<double>(), 0.0);
    EXPECT_GT(j.at("lr").get<double>(), 0.0);
  }
  EXPECT_EQ(n, 3);
  // The checkpoint is a model the other commands read.
  const auto info = run(tandem_bin() + " info -m " + dir + "/checkpoint.gguf");
  EXPECT_EQ(info.code, 0) << info.out;
  EXPECT_NE(info.out.find("llama"), std::string::npos) << info.out;
  const std::string svg = read_text(rep + "/loss.svg");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(read_text(rep + "/index.html").find("final loss"), std::string::npos);
}

// --bf16: the log and the summary say so; where AVX-512 BF16 is not in use (another
// instruction set here) the run goes on on the portable path and says that it does.
TEST(CliTrain, Bf16RunSaysWhichProductsRan) {
  const std::string dir = temp_dir() + "/bf16";
  const std::string args = " train --preset tiny --task passkey --ctx 32 --batch 2 --steps 2 "
                           "--eval-examples 4 -t 2 --bf16";
  const auto r = run(tandem_bin() + args + " --out " + dir);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("(bf16 ("), std::string::npos) << r.out;
  std::ifstream log(dir + "/log.jsonl");
  std::string line;
  int n = 0;
  for (; std::getline(log, line); ++n) EXPECT_TRUE(nlohmann::json::parse(line).value("bf16", false)) << line;
  EXPECT_EQ(n, 2);
  const auto p = run("TANDEM_KERNELS_ISA=avx2 " + tandem_bin() + args);
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("--bf16: no AVX-512 BF16 in use"), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("(bf16 (portable) products)"), std::string::npos) << p.out;
  const auto f = run(tandem_bin() + " train --preset tiny --task passkey --ctx 32 --batch 2 "
                     "--steps 1 --eval-examples 4 -t 2");
  EXPECT_NE(f.out.find("(f32 products)"), std::string::npos) << f.out;
}

TEST(CliTrain, TextDataIsTokenizedWithTheVocabulary) {
  const std::string txt = temp_dir() + "/data.txt";
  {
    std::ofstream f(txt);
    for (int i = 0; i < 40; ++i) f << "The quick brown fox jumps over the lazy dog number " << i << ". ";
  }
  const auto r = run(tandem_bin() + " train --preset tiny --vocab " +
                     shared_path("vocab/ggml-vocab-llama-spm.gguf") + " --data " + txt +
                     " --ctx 64 --batch 1 --steps 2 -t 2 -q");
  ASSERT_EQ(r.code, 0) << r.out;
  // Over a 32000-token vocabulary the first loss is about ln 32000 = 10.4.
  EXPECT_NE(r.out.find("final loss 10."), std::string::npos) << r.out;
}

TEST(CliTrain, BadInputNamesTheFlag) {
  struct Case {
    std::string args, needle;
    int code;
  };
  const std::string base = " train --preset tiny --steps 1 -q";
  for (const Case& c : std::vector<Case>{
           {base + " --ctx 32", "exactly one of --data", 2},
           {base + " --task copy", "--task copy", 2},
           {base + " --task passkey --batch 0", "--batch 0", 2},
           {base + " --task passkey --sp pass-q", "--sp pass-q", 2},
           {base + " --task passkey --sp hybrid:2x2", "--sp: hybrid:2x2 needs U x R = 4 ranks", 2},
           {base + " --task passkey --sp hybrid:2", "--sp: 'hybrid:2' should be hybrid:UxR", 2},
           {base + " --data /nonexistent/x.txt --vocab " + shared_path("vocab/ggml-vocab-llama-spm.gguf"), "/nonexistent/x.txt", 2},
           {base + " --data x.txt", "--vocab", 2},
           {base + " --task passkey --ctx 16384 --max-memory 64M", "--max-memory", 3},
           {" train --resume /nonexistent/run", "/nonexistent/run", 2},
       }) {
    SCOPED_TRACE(c.args);
    const auto r = run(tandem_bin() + c.args);
    EXPECT_EQ(r.code, c.code) << r.out;
    EXPECT_NE(r.out.find(c.needle), std::string::npos) << r.out;
  }
}

}  // namespace
