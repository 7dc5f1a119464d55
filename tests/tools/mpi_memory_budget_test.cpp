// --max-memory holds as the operating system measures it. Each command is run three
// times: with a 1-byte budget (refused; its message gives the per-rank estimate E), with
// a budget just below E (refused before any large allocation: the peak resident set of
// its largest process stays at the runtime's baseline), and just above E (it runs, and
// the peak resident set of its largest process, a rank under mpirun, stays within E
// itself: the estimate counts the process's measured baseline - program, libraries,
// thread stacks, MPI runtime - and a slack allowance beside what the run allocates).
// kMargin bounds the baseline (about 16 MiB for a process alone, 25 MiB for a rank under
// mpirun on the 2-core CI machine) and what the reports leave unexplained.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>

#include "support/test_paths.hpp"

using tandem::test::run_measured;
using tandem::test::shared_path;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kMargin = 32 * kMiB;

using tandem::test::mpirun;

// The largest "needs X UNIT" of the output, in bytes (format_size: B, KiB, MiB, GiB).
double largest_need(const std::string& out) {
  static const std::regex re(R"(needs ([0-9.]+) (B|KiB|MiB|GiB) )");
  double worst = 0;
  for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator(); ++it) {
    const std::string unit = (*it)[2];
    const double scale = unit == "B" ? 1 : unit == "KiB" ? 1024 : unit == "MiB" ? kMiB : kMiB * 1024;
    worst = std::max(worst, std::stod((*it)[1]) * scale);
  }
  return worst;
}

struct Case {
  std::string name, cmd;  // cmd without --max-memory
};

void check_budgets(const Case& c) {
  SCOPED_TRACE(c.name);
  const auto probe = run_measured(c.cmd + " --max-memory 1");
  ASSERT_EQ(probe.code, 3) << probe.out;
  const double need = largest_need(probe.out);
  ASSERT_GT(need, 0) << probe.out;
  // The printed estimate has four significant digits: 2% either side is safely over/under.
  const double below = std::floor(need * 0.98), above = std::ceil(need * 1.02);
  const auto refused = run_measured(c.cmd + " --max-memory " + std::to_string(int64_t(below)));
  EXPECT_EQ(refused.code, 3) << refused.out;
  EXPECT_NE(refused.out.find("needs"), std::string::npos) << refused.out;
  EXPECT_LE(refused.peak_rss_bytes, kMargin) << "refused, but the process grew: " << refused.out;
  const auto ran = run_measured(c.cmd + " --max-memory " + std::to_string(int64_t(above)));
  EXPECT_EQ(ran.code, 0) << ran.out;
  EXPECT_LE(ran.peak_rss_bytes, need)
      << "estimate " << need / kMiB << " MiB, budget " << above / kMiB << " MiB, peak RSS "
      << ran.peak_rss_bytes / kMiB << " MiB";
  std::printf("%-28s estimate %7.1f MiB  budget %7.1f MiB  peak RSS %7.1f MiB  (refused at %7.1f MiB: peak %5.1f MiB)\n",
              c.name.c_str(), need / kMiB, above / kMiB, ran.peak_rss_bytes / kMiB, below / kMiB,
              refused.peak_rss_bytes / kMiB);
}

std::string tiny() { return shared_path("models/tiny-f16.gguf"); }

// Under AddressSanitizer the resident set holds its shadow memory and quarantine beside
// the program's own (about 100 MiB of baseline here): the figures these tests compare are
// not the program's, so they run in the plain build only.
#define TANDEM_SKIP_WHEN_SANITIZED() \
  if (tandem::test::kSanitized) GTEST_SKIP() << "peak RSS under a sanitizer is not the program's own"

}  // namespace

TEST(MemoryBudget, SingleRankCommandsStayWithinTheirBudget) {
  TANDEM_SKIP_WHEN_SANITIZED();
  const std::string t = tandem_bin(), out = temp_dir() + "/budget.f32";
  for (const Case& c : {
           Case{"generate", t + " generate -m " + tiny() + " -p 'Once upon a time' -n 16 -t 1"},
           Case{"logits (every row)", t + " logits -m " + tiny() + " --random-tokens 1024 -t 1 --out " + out},
           Case{"logits --last 4", t + " logits -m " + tiny() + " --random-tokens 4096 --last 4 -t 1 --out " + out},
           Case{"prefill", t + " prefill -m " + tiny() + " --random-tokens 4096 -t 1"},
       })
    check_budgets(c);
}

TEST(MemoryBudget, SequenceParallelRanksStayWithinTheirBudget) {
  TANDEM_SKIP_WHEN_SANITIZED();
  const std::string t = mpirun(2, 300) + tandem_bin(), out = temp_dir() + "/budget-sp.f32";
  for (const Case& c : {
           Case{"prefill --sp ring", t + " prefill -m " + tiny() + " --random-tokens 8192 -t 1 --sp ring"},
           Case{"prefill --sp ulysses", t + " prefill -m " + tiny() + " --random-tokens 4096 -t 1 --sp ulysses"},
           Case{"logits --sp zigzag", t + " logits -m " + tiny() + " --random-tokens 1024 -t 1 --sp zigzag --out " + out},
           Case{"generate --sp ring", t + " generate -m " + tiny() + " -p 'Once upon a time' -n 16 -t 1 --sp ring"},
       })
    check_budgets(c);
}

// prefill --json reports each rank's measured memory beside the accounting, and the two
// agree: the peak resident set holds the baseline, the weights' copies and the KV cache,
// and what no column explains stays within kMargin.
TEST(MemoryBudget, PrefillReportsMeasuredMemoryBesideTheAccounting) {
  TANDEM_SKIP_WHEN_SANITIZED();
  for (const std::string launch : {std::string(), mpirun(2)}) {
    SCOPED_TRACE(launch.empty() ? "single process" : "mpirun -np 2");
    const auto r = run_measured(launch + tandem_bin() + " prefill -m " + tiny() +
                                " --random-tokens 4096 -t 1 --json" + (launch.empty() ? "" : " --sp zigzag"));
    ASSERT_EQ(r.code, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
    double most = 0;
    for (const auto& x : j.at("per_rank")) {
      const double peak = x.at("peak_rss_bytes").get<double>(), base = x.at("baseline_rss_bytes").get<double>();
      EXPECT_GT(base, 1 * kMiB);
      EXPECT_GT(peak, base + x.at("kv_bytes").get<double>() + 0.5 * x.at("weights_bytes").get<double>());
      EXPECT_LE(std::abs(x.at("unaccounted_bytes").get<double>()), kMargin) << x.dump();
      most = std::max(most, peak);
    }
    // The largest process's own figure (/proc VmHWM) and the parent's (wait4 ru_maxrss of
    // its largest child) agree.
    EXPECT_NEAR(most, r.peak_rss_bytes, 2 * kMiB);
  }
}

// generate --json reports its process's measured peak RSS beside its estimate.
TEST(MemoryBudget, GenerateReportsMeasuredMemory) {
  TANDEM_SKIP_WHEN_SANITIZED();
  const auto r = run_measured(tandem_bin() + " generate -m " + tiny() +
                              " -p 'Once upon a time' -n 8 -t 1 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  const double peak = j.at("peak_rss_bytes").get<double>(), est = j.at("estimate_bytes").get<double>();
  EXPECT_NEAR(peak, r.peak_rss_bytes, 2 * kMiB);
  EXPECT_GT(est, 40 * kMiB);  // the weights alone are 47 MiB
  EXPECT_LE(peak, est + j.at("baseline_rss_bytes").get<double>() + kMargin);
  // The peak itemized: the accounting names all but a few MiB of it.
  const auto m = j.at("memory");
  EXPECT_DOUBLE_EQ(m.at("peak_rss_bytes").get<double>(), peak);
  EXPECT_GT(m.at("weights_bytes").get<double>(), 25 * kMiB);  // the matrices: 29 MiB
  EXPECT_GT(m.at("kv_bytes").get<double>(), 0);
  EXPECT_GT(m.at("activation_bytes").get<double>(), 0);
  const double unaccounted = peak - m.at("baseline_rss_bytes").get<double>() -
                             m.at("weights_bytes").get<double>() - m.at("kv_bytes").get<double>() -
                             m.at("activation_bytes").get<double>() -
                             m.at("workspace_bytes").get<double>();
  EXPECT_LT(std::fabs(unaccounted), 8 * kMiB) << r.out;
}

// logits and bench print the same itemized line; logits counts the rows it holds.
TEST(MemoryBudget, LogitsAndBenchItemizeTheirPeak) {
  const auto l = run_measured(tandem_bin() + " logits -m " + tiny() +
                              " --random-tokens 512 -t 1 --out /dev/null");
  ASSERT_EQ(l.code, 0) << l.out;
  EXPECT_NE(l.out.find("+ logits 62.5 + unaccounted"), std::string::npos) << l.out;
  const auto b = run_measured(tandem_bin() + " bench -m " + tiny() + " -p 64 -n 4 -r 1 -t 1");
  ASSERT_EQ(b.code, 0) << b.out;
  for (const auto* item : {"= baseline ", " + weights ", " + KV ", " + activations ", " + unaccounted "})
    EXPECT_NE(b.out.find(item), std::string::npos) << item << "\n" << b.out;
}

// The budget under a hard limit the kernel enforces: each process (each rank under
// mpirun) in a memory cgroup of its own (scripts/in-memory-limit.sh). prefill --fit with
// --max-memory equal to the limit picks the longest prompt whose estimate - the measured
// baseline included - fits, and runs to the end inside the limit; the same command with
// a prompt past what fits is killed by the kernel, so the limit is real.
TEST(MemoryBudget, FitRunsUnderAHardLimit) {
  TANDEM_SKIP_WHEN_SANITIZED();
  const std::string limit = "128M";
  const std::string wrap = tandem::test::script_path("in-memory-limit.sh") + " " + limit + " ";
  for (const auto& [launch, np] : {std::pair<std::string, int>{std::string(), 1}, {mpirun(2), 2}}) {
    SCOPED_TRACE(np == 1 ? "single process" : "mpirun -np 2, a limit per rank");
    const std::string sp = np == 1 ? "" : " --sp zigzag";
    const auto fit = tandem::test::run(launch + wrap + tandem_bin() + " prefill -m " + tiny() +
                                       " --fit --max-memory " + limit + " -t 1" + sp);
    if (fit.code == 77) GTEST_SKIP() << "no memory cgroup can be made here: " << fit.out;
    EXPECT_EQ(fit.code, 0) << fit.out;
    EXPECT_EQ(fit.out.find("killed"), std::string::npos) << fit.out;
    // 16384 tokens per rank hold 216 MiB of KV: past the limit.
    const auto over = tandem::test::run(launch + wrap + tandem_bin() + " prefill -m " + tiny() +
                                        " --random-tokens " + std::to_string(16384 * np) +
                                        " -t 1" + sp);
    EXPECT_NE(over.code, 0) << over.out;
    EXPECT_NE(over.out.find("killed"), std::string::npos) << over.out;
  }
}
