// Absurd inputs are refused before they cost anything: files read as text are bounded
// (a regular file by its size, before reading; a pipe or device after at most the limit),
// whole-number flags have upper bounds, and --schemes goes through the one scheme parser.
// Each check runs the built tandem program and looks at its exit code, its message, its
// time and (where no sanitizer reserves address space) its memory.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "support/test_paths.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/text_file.hpp"
#include "tandem/parallel/scheme.hpp"

using tandem::test::run;
using tandem::test::shared_path;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

using tandem::test::kSanitized;

std::string tiny() { return shared_path("models/tiny-f16.gguf"); }

struct Outcome {
  int code = -1;
  std::string err;      // stderr and stdout together
  double seconds = 0;
};

// Runs `tandem ARGS` with its address space capped at `cap_mib` MiB (not under a
// sanitizer, whose shadow memory needs terabytes of address space) and a time limit, so
// that an unbounded read or allocation fails instead of taking the machine's memory.
Outcome run_capped(const std::string& args, int cap_mib = 3072) {
  const std::string cap = kSanitized ? "" : "ulimit -v " + std::to_string(cap_mib * 1024) + "; ";
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run("( " + cap + "exec timeout 120 " + tandem_bin() + " " + args + " )");
  Outcome o;
  o.code = r.code;
  o.err = r.out;
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return o;
}

// The largest resident set of any child this process has waited for, in MiB.
double children_peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_CHILDREN, &u);
  return double(u.ru_maxrss) / 1024.0;
}

// A bad-input refusal: exit 2, every needle in the message.
void expect_refused(const Outcome& o, const std::vector<std::string>& needles) {
  EXPECT_EQ(o.code, 2) << o.err;
  EXPECT_NE(o.err.find("tandem: error: "), std::string::npos) << o.err;
  for (const auto& n : needles) EXPECT_NE(o.err.find(n), std::string::npos) << n << "\n" << o.err;
}

// A sparse file of `bytes` (no data blocks written).
std::string sparse_file(const std::string& name, uint64_t bytes) {
  const std::string path = temp_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f) std::fclose(f);
  std::filesystem::resize_file(path, bytes);
  return path;
}

}  // namespace

TEST(CliBounds, PromptFileFromDevZeroIsRefusedAfterTheLimit) {
  // Before the bound the whole of /dev/zero was read: the process grew until memory ran
  // out (under the cap here: "out of memory", exit 3).
  const auto o = run_capped("prefill -m " + tiny() + " --prompt-file /dev/zero");
  expect_refused(o, {"--prompt-file /dev/zero", "536870912 bytes", "reading stopped"});
  EXPECT_LT(o.seconds, 60.0);
  // At most the limit plus a piece in flight, and the program itself.
  if (!kSanitized) {
    EXPECT_LT(children_peak_rss_mib(), 1024.0);
  }
}

TEST(CliBounds, TokenizeFileFromDevZeroIsRefusedAfterTheLimit) {
  const auto o = run_capped("tokenize -m " + tiny() + " -f /dev/zero");
  expect_refused(o, {"--file /dev/zero", "536870912 bytes"});
}

TEST(CliBounds, RegularFileOverTheLimitIsRefusedBeforeReading) {
  const std::string big = sparse_file("prompt-600MiB.txt", uint64_t{600} << 20);
  for (const std::string& args : {"prefill -m " + tiny() + " --prompt-file " + big,
                                  "tokenize -m " + tiny() + " -f " + big}) {
    SCOPED_TRACE(args);
    // A 64 MiB address-space cap beyond the program's own needs would do; the read would
    // need 600 MiB. The size is checked first: nothing is read, and fast.
    const auto o = run_capped(args, 1024);
    expect_refused(o, {big, "629145600 bytes", "536870912 bytes (512.0 MiB)"});
    EXPECT_LT(o.seconds, 10.0);
  }
  const auto o = run_capped("prefill -m " + tiny() + " --prompt-file " + big);
  EXPECT_NE(o.err.find("--prompt-file " + big), std::string::npos) << o.err;
}

TEST(CliBounds, ProfileFromDevZeroIsRefused) {
  const auto o = run_capped("plan -m tiny -n 4096 --hardware /dev/zero");
  expect_refused(o, {"--hardware /dev/zero", "16777216 bytes"});
}

TEST(CliBounds, ReaderLimitIsExact) {
  const std::string path = temp_dir() + "/exact.txt";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    std::fputs("0123456789", f);
    std::fclose(f);
  }
  EXPECT_EQ(tandem::read_file_bounded(path, "--f", 10), "0123456789");
  EXPECT_THROW(tandem::read_file_bounded(path, "--f", 9), tandem::Error);
  EXPECT_EQ(tandem::read_file_bounded("/dev/null", "--f", 0), "");
  try {
    tandem::read_file_bounded("/dev/zero", "--f", 4096);
    ADD_FAILURE() << "/dev/zero was read";
  } catch (const tandem::Error& e) {
    EXPECT_EQ(e.kind(), tandem::ErrorKind::BadInput);
    EXPECT_EQ(std::string(e.what()).rfind("--f /dev/zero: the limit is 4096 bytes", 0), 0u) << e.what();
  }
  try {
    tandem::read_file_bounded(temp_dir(), "--f", 4096);
    ADD_FAILURE() << "a directory was read";
  } catch (const tandem::Error& e) {
    EXPECT_NE(std::string(e.what()).find("directory"), std::string::npos) << e.what();
  }
}

TEST(CliBounds, PlanSizesAreBounded) {
  // --gpus 2147483640 used to run the planner out of memory (quadratic in P).
  auto o = run_capped("plan -m tiny -n 4096 --gpus 2147483640");
  expect_refused(o, {"--gpus", "2147483640", "from 1 to 4096"});
  EXPECT_LT(o.seconds, 10.0);
  expect_refused(run_capped("plan -m tiny -n 4096 --gpus 8 --gpus-per-node 2147483647"),
                 {"--gpus-per-node", "from 1 to 4096"});
  expect_refused(run_capped("plan -m tiny -n 99999999999999999999999"),
                 {"--tokens", "from 1 to 1099511627776"});
  expect_refused(run_capped("plan -m tiny -n 1099511627777"), {"--tokens"});
  expect_refused(run_capped("plan -m tiny -n 4096 --decode-tokens 1099511627777"),
                 {"--decode-tokens"});
  // The largest accepted values plan.
  o = run_capped("plan -m tiny -n 1099511627776 --gpus 64 --decode-tokens 1099511627776");
  EXPECT_EQ(o.code, 0) << o.err;
}

TEST(CliBounds, NumbersAreDecimalAsWritten) {
  // CLI11 converts with strtoll in base 0: "010" was 8 tokens, "0x10" 16. Refused now.
  expect_refused(run_capped("generate -m " + tiny() + " -p hi -n 010"),
                 {"--n-predict", "'010'", "leading zeros"});
  expect_refused(run_capped("generate -m " + tiny() + " -p hi -n 0x10"), {"--n-predict", "'0x10'"});
  expect_refused(run_capped("plan -m tiny -n 4096 --gpus 08"), {"--gpus", "'08'"});
}

TEST(CliBounds, OtherSizeFlagsAreBounded) {
  const std::string m = " -m " + tiny();
  expect_refused(run_capped("generate" + m + " -p hi --parallel 4097"), {"--parallel"});
  expect_refused(run_capped("prefill" + m + " --random-tokens 67108865"), {"--random-tokens"});
  expect_refused(run_capped("bench" + m + " -p 16777217"), {"--n-prompt"});
  expect_refused(run_capped("bench --roofline --roofline-mib 65537"), {"--roofline-mib"});
  expect_refused(run_capped("compare --lengths 256,99999999999"), {"--lengths", "99999999999"});
  expect_refused(run_capped("compare --ranks 2,65"), {"--ranks", "'65'"});
  std::string many = "1";
  for (int i = 0; i < 64; ++i) many += ",1";
  expect_refused(run_capped("compare --lengths " + many), {"--lengths", "more than 64 items"});
  const std::string out = " -o " + temp_dir() + "/huge.gguf";
  expect_refused(run_capped("make-model --type f16 --vocab-size 64 --dim 1048577" + out),
                 {"--dim 1048577", "limit"});
  // Each flag within its limit, together far past this machine's memory.
  expect_refused(run_capped("make-model --type f32 --vocab-size 16777216 --dim 1048576 --heads 4 "
                            "--kv-heads 4" + out),
                 {"--dim", "memory"});
  EXPECT_FALSE(std::filesystem::exists(temp_dir() + "/huge.gguf"));
}

TEST(CliBounds, HybridSpellingsGoThroughTheSchemeParser) {
  for (const std::string bad : {"hybrid:99999999999x2", "hybrid:2x", "hybrid:0x2", "hybrid:2x2x2",
                                "hybrid:-1x2", "hybrid2x2", "hybrid:x", "hybrid:2X2",
                                "hybrid:1048577x2", "hybrid: 2x2"}) {
    SCOPED_TRACE(bad);
    std::string expected;
    try {
      tandem::parallel::parse_scheme(bad, 0, "--schemes");
      ADD_FAILURE() << "the parser accepted it";
    } catch (const tandem::Error& e) {
      expected = e.what();
    }
    const auto o = run_capped("compare --schemes 'ring," + bad + "' --lengths 16 --out " +
                              temp_dir() + "/no-report");
    EXPECT_EQ(o.code, 2) << o.err;
    EXPECT_NE(o.err.find("tandem: error: " + expected), std::string::npos)
        << "expected: " << expected << "\n" << o.err;
    EXPECT_FALSE(std::filesystem::exists(temp_dir() + "/no-report"));
  }
}
