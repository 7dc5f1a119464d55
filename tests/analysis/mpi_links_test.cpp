// `tandem compare --links 1gbit` end to end on emulated hosts (network namespaces, a
// bridge, tbf): the report carries the links setting and the crossover, and no namespace
// is left behind, neither after a normal run, nor after SIGTERM, nor from an earlier run
// that died (removed at start). Skipped with a reason where this is not root or the
// system cannot create network namespaces.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/test_paths.hpp"
#include "tandem/analysis/links.hpp"

namespace ta = tandem::analysis;
using tandem::test::run;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

using tandem::test::read_text;

namespace {

// Why this system cannot run --links, or "" when it can.
std::string why_not() {
  if (::geteuid() != 0) return "not root (--links needs root)";
  for (const char* p : {"ip", "tc", "unshare", "mpirun"})
    if (!ta::program_on_path(p)) return std::string(p) + " is not on PATH";
  const std::string ns = "tandem-links-" + std::to_string(::getpid()) + "-probe";
  const auto r = run("ip netns add " + ns + " && ip netns del " + ns);
  if (r.code != 0) return "ip netns add fails here: " + r.out;
  return "";
}

// A pid that no longer runs.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int st = 0;
  ::waitpid(pid, &st, 0);
  return pid;
}

const char* kTiny = " --lengths 64,128 --schemes ring --decode-tokens 2 -t 1 --rounds 1";

}  // namespace

TEST(CompareLinks, OneGbitEndToEnd) {
  if (const auto why = why_not(); !why.empty()) GTEST_SKIP() << why;
  // A namespace left by a run that died: removed when the next one starts.
  const std::string stale = "tandem-links-" + std::to_string(dead_pid()) + "-h0";
  ASSERT_EQ(run("ip netns add " + stale).code, 0);

  const std::string out = temp_dir() + "/links";
  const auto r = run(tandem_bin() + " compare --links 1gbit --hardware cpu-this" + kTiny + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(ta::list_namespaces(stale).empty()) << stale << " is still there";
  EXPECT_NE(r.out.find("links: 1gbit"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("crossover (smallest measured N"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ring P=2 over 1gbit links"), std::string::npos) << r.out;

  const auto j = nlohmann::json::parse(read_text(out + "/results.json"));
  ASSERT_TRUE(j["links"].is_object()) << j.dump(2);
  EXPECT_EQ(j["links"]["rate"], "1gbit");
  EXPECT_EQ(j["links"]["bits_per_second"].get<double>(), 1e9);
  // The rate is enforced: one link carries well under 2 Gbit/s (and something at all).
  if (j["links"]["measured_bandwidth_bytes_per_s"].is_number()) {
    const double bw = j["links"]["measured_bandwidth_bytes_per_s"].get<double>();
    EXPECT_GT(bw, 1e7);
    EXPECT_LT(bw, 2e9 / 8);
  }
  ASSERT_EQ(j["crossovers"].size(), 1u);
  EXPECT_EQ(j["crossovers"][0]["label"], "ring P=2");
  EXPECT_EQ(j["crossovers"][0]["speedup"].size(), 2u);
  EXPECT_TRUE(j["crossovers"][0]["from_tokens"].is_null() || j["crossovers"][0]["from_tokens"].is_number());
  for (const auto& run : j["runs"]) EXPECT_TRUE(run["ok"].get<bool>()) << run.dump();
  const auto html = read_text(out + "/index.html");
  EXPECT_NE(html.find("Links: 1gbit"), std::string::npos);
  EXPECT_NE(html.find("Crossover over 1gbit links"), std::string::npos);

  // Nothing left: the namespaces it used and its scratch folder are gone.
  ASSERT_GE(j["links"]["namespaces"].size(), 4u);
  for (const auto& ns : j["links"]["namespaces"])
    EXPECT_TRUE(ta::list_namespaces(ns.get<std::string>()).empty()) << ns;
  const std::string mine = j["links"]["namespaces"][0].get<std::string>();
  const std::string base = mine.substr(0, mine.size() - 3);  // drop "-br"
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::temp_directory_path()))
    EXPECT_NE(e.path().filename().string().rfind(base, 0), 0u) << e.path();
}

TEST(CompareLinks, SigtermTearsDown) {
  if (const auto why = why_not(); !why.empty()) GTEST_SKIP() << why;
  const std::string out = temp_dir() + "/links-term";
  const std::string cmd = tandem_bin() + " compare --links 1gbit --hardware cpu-this" + kTiny + " --out " + out +
                          " >" + out + ".log 2>&1";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ASSERT_GT(pid, 0);
  const std::string prefix = "tandem-links-" + std::to_string(pid) + "-";
  // Wait for its hosts (and a moment of MPI traffic), then stop it.
  const auto t0 = std::chrono::steady_clock::now();
  while (ta::list_namespaces(prefix).size() < 4 &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const bool built = ta::list_namespaces(prefix).size() >= 4;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ::kill(pid, SIGTERM);
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(built) << read_text(out + ".log");
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM) << st << "\n" << read_text(out + ".log");
  EXPECT_NE(read_text(out + ".log").find("removing the emulated hosts"), std::string::npos)
      << read_text(out + ".log");
  EXPECT_TRUE(ta::list_namespaces(prefix).empty());
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::temp_directory_path()))
    EXPECT_NE(e.path().filename().string().rfind(prefix, 0), 0u) << e.path();
}
