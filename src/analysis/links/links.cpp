// Emulated slow links for `tandem compare --links`: rate parsing, tbf settings, and the
// network-namespace hosts (set up and torn down through small generated shell scripts,
// which keeps every command visible in the scratch folder while a run is in progress).
#include "tandem/analysis/links.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "tandem/core/error.hpp"

namespace tandem::analysis {
namespace {

namespace fs = std::filesystem;

// Runs a shell command; returns its exit code and stdout + stderr.
int shell(const std::string& cmd, std::string* out = nullptr) {
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return -1;
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const int st = ::pclose(f);
  if (out) *out = text;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

void write_script(const fs::path& path, const std::string& text, bool executable) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) fail(ErrorKind::Internal, "--links: cannot write {}", path.string());
  if (executable) ::chmod(path.c_str(), 0755);
}

// Shell lines that kill what runs in a namespace and delete it (no error if it is gone).
std::string remove_ns_lines(const std::string& ns) {
  return fmt::format(
      "pids=$(ip netns pids {0} 2>/dev/null); [ -n \"$pids\" ] && kill -9 $pids 2>/dev/null\n"
      "ip netns del {0} 2>/dev/null\n",
      shell_quote(ns));
}

std::string host_ip(int i) { return fmt::format("10.77.0.{}", i + 1); }

// The signal handler runs the teardown script of the live EmulatedHosts (fork + exec:
// async-signal-safe), then dies of the signal as it would have.
char g_teardown[4096];
const int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction g_old[3];

extern "C" void on_fatal_signal(int sig) {
  if (g_teardown[0]) {
    static const char msg[] = "\ntandem: interrupted; removing the emulated hosts (--links)\n";
    (void)!::write(2, msg, sizeof msg - 1);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", g_teardown, static_cast<char*>(nullptr));
      ::_exit(127);
    }
    int st = 0;
    while (pid > 0 && ::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_handlers(const std::string& teardown_script) {
  std::snprintf(g_teardown, sizeof g_teardown, "%s", teardown_script.c_str());
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < 3; ++i) ::sigaction(kSignals[i], &sa, &g_old[i]);
}

void restore_handlers() {
  for (size_t i = 0; i < 3; ++i) ::sigaction(kSignals[i], &g_old[i], nullptr);
  g_teardown[0] = '\0';
}

// The pid in "<prefix>-<pid>-..." or -1.
long owner_pid(const std::string& name) {
  const std::string head = std::string(kLinksPrefix) + "-";
  if (name.rfind(head, 0) != 0) return -1;
  long pid = 0;
  const char* end = name.data() + name.size();
  const auto [p, ec] = std::from_chars(name.data() + head.size(), end, pid);
  return ec == std::errc() && pid > 0 && p < end && *p == '-' ? pid : -1;
}

bool process_gone(long pid) { return ::kill(pid_t(pid), 0) != 0 && errno == ESRCH; }

}  // namespace

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (const char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

bool program_on_path(const std::string& prog) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (::access((fs::path(dir.empty() ? "." : dir) / prog).c_str(), X_OK) == 0) return true;
  return false;
}

std::string LinkRate::name() const {
  const double b = bits_per_second;
  if (b >= 1e9) return fmt::format("{:g}gbit", b / 1e9);
  if (b >= 1e6) return fmt::format("{:g}mbit", b / 1e6);
  return fmt::format("{:g}kbit", b / 1e3);
}

LinkRate parse_link_rate(const std::string& text, const std::string& flag) {
  static const std::regex re(R"(^([0-9]+(\.[0-9]+)?)(kbit|mbit|gbit)$)");
  std::string lower = text;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  std::smatch m;
  if (!std::regex_match(lower, m, re))
    bad_input("{}: '{}' is not a link rate (give a number and kbit, mbit or gbit, e.g. 1gbit, "
              "10gbit, 500mbit)", flag, text);
  const double unit = m[3] == "kbit" ? 1e3 : m[3] == "mbit" ? 1e6 : 1e9;
  LinkRate r;
  // The regex admits only digits with one optional point; a value too large for a double
  // (hundreds of digits) is refused with the range message below.
  double value = 0;
  const std::string digits = m[1].str();
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size()) value = HUGE_VAL;
  r.bits_per_second = value * unit;
  if (r.bits_per_second < 1e6 || r.bits_per_second > 400e9)
    bad_input("{}: '{}' is outside 1mbit..400gbit", flag, text);
  return r;
}

std::string TbfSettings::tc_args() const {
  return fmt::format("tbf rate {}bit burst {} latency {}ms", rate_bits, burst_bytes, latency_ms);
}

TbfSettings tbf_settings(const LinkRate& rate) {
  TbfSettings t;
  t.rate_bits = int64_t(rate.bits_per_second + 0.5);
  // ~2 ms of traffic in 16 KiB steps, 32 KiB..1 MiB: 256 KiB at 1gbit, 1 MiB at 10gbit.
  const double two_ms = rate.bits_per_second / 8 * 0.002;
  const int64_t step = 16 << 10;
  t.burst_bytes = std::clamp<int64_t>((int64_t(two_ms) + step - 1) / step * step, 32 << 10, 1 << 20);
  // A queue of ~6 MB: 50 ms at 1gbit, 5 ms at 10gbit, at most 200 ms.
  t.latency_ms = int(std::clamp(5e10 / rate.bits_per_second, 5.0, 200.0) + 0.5);
  return t;
}

void check_links_supported() {
  if (::geteuid() != 0)
    bad_input("--links: emulated links need root (they create network namespaces, veth pairs, "
              "a bridge and tc qdiscs); run tandem compare --links as root, e.g. with sudo");
  for (const char* prog : {"ip", "tc", "unshare", "mpirun"})
    if (!program_on_path(prog))
      bad_input("--links: '{}' is not on PATH (needs iproute2, util-linux and Open MPI)", prog);
}

std::vector<std::string> list_namespaces(const std::string& prefix) {
  std::vector<std::string> v;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0) v.push_back(name);
  }
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<std::string> remove_stale_links() {
  std::vector<std::string> gone;
  std::string script;
  for (const auto& ns : list_namespaces(std::string(kLinksPrefix) + "-")) {
    const long pid = owner_pid(ns);
    if (pid > 0 && process_gone(pid)) {
      gone.push_back(ns);
      script += remove_ns_lines(ns);
    }
  }
  if (!script.empty()) shell(script);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::temp_directory_path(ec), ec)) {
    const long pid = owner_pid(e.path().filename().string());
    std::error_code ec2;
    if (pid > 0 && process_gone(pid) && e.is_directory(ec2)) fs::remove_all(e.path(), ec2);
  }
  return gone;
}

EmulatedHosts::EmulatedHosts(int hosts, const LinkRate& rate) : rate_(rate), tbf_(tbf_settings(rate)) {
  if (hosts < 2 || hosts > 64) bad_input("--links: needs 2 to 64 hosts, not {}", hosts);
  check_links_supported();
  const auto stale = remove_stale_links();
  if (!stale.empty())
    fmt::print(stderr, "compare: removed {} namespace(s) left by an earlier --links run\n", stale.size());
  const std::string base = fmt::format("{}-{}", kLinksPrefix, ::getpid());
  std::string tmpl = (fs::temp_directory_path() / (base + "-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data()))
    fail(ErrorKind::Internal, "--links: cannot make a scratch folder ({})", std::strerror(errno));
  dir_ = tmpl;
  const fs::path d(dir_);
  const std::string br = base + "-br", ctl = base + "-ctl";
  namespaces_ = {br, ctl};
  for (int i = 0; i < hosts; ++i) namespaces_.push_back(fmt::format("{}-h{}", base, i));

  // setup.sh: the bridge namespace, then one veth per host (control first, unlimited).
  std::string setup = fmt::format(
      "#!/bin/sh\nset -e\nip netns add {0}\nip -n {0} link set lo up\n"
      "ip -n {0} link add br0 type bridge\nip -n {0} link set br0 up\n"
      "add_host() {{  # namespace address port limit\n"
      "  ip netns add \"$1\"\n  ip -n \"$1\" link set lo up\n"
      "  ip link add eth0 netns \"$1\" type veth peer name \"$3\" netns {0}\n"
      "  ip -n \"$1\" addr add \"$2\"/24 dev eth0\n  ip -n \"$1\" link set eth0 up\n"
      "  ip -n {0} link set \"$3\" master br0\n  ip -n {0} link set \"$3\" up\n"
      "  if [ \"$4\" = 1 ]; then\n"
      "    tc -n \"$1\" qdisc add dev eth0 root {1}\n"
      "    tc -n {0} qdisc add dev \"$3\" root {1}\n  fi\n}}\n"
      "add_host {2} 10.77.0.254 pc 0\n",
      shell_quote(br), tbf_.tc_args(), shell_quote(ctl));
  std::string agent =
      "#!/bin/sh\n# Open MPI rsh agent: agent.sh HOST COMMAND... runs COMMAND on emulated HOST.\n"
      "host=$1; shift\ncase \"$host\" in\n";
  std::string hostfile;
  for (int i = 0; i < hosts; ++i) {
    const std::string& ns = namespaces_[size_t(2 + i)];
    setup += fmt::format("add_host {} {} p{} 1\n", shell_quote(ns), host_ip(i), i);
    agent += fmt::format("  {}) ns={}; name=h{} ;;\n", host_ip(i), shell_quote(ns), i);
    hostfile += host_ip(i) + " slots=1\n";
  }
  agent += fmt::format(
      "  *) echo \"tandem --links agent: unknown host $host\" >&2; exit 1 ;;\nesac\n"
      "export TMPDIR={}/$name\nmkdir -p \"$TMPDIR\"\n"
      "exec ip netns exec \"$ns\" unshare --uts sh -c \"hostname $name && $*\"\n",
      shell_quote(dir_));
  std::string down = "#!/bin/sh\n";
  for (auto it = namespaces_.rbegin(); it != namespaces_.rend(); ++it) down += remove_ns_lines(*it);
  down += "rm -rf " + shell_quote(dir_) + "\n";
  const std::string launcher = fmt::format(
      "#!/bin/sh\n# mpirun across the emulated hosts: mpirun.sh -np P PROGRAM ARGS...\n"
      "export TMPDIR={0}/ctl\nmkdir -p \"$TMPDIR\"\n"
      "exec ip netns exec {1} unshare --uts sh -c 'hostname ctl && exec mpirun \"$@\"' sh "
      "--allow-run-as-root --oversubscribe --bind-to none --hostfile {0}/hosts "
      "--mca plm_rsh_agent {0}/agent.sh --mca btl tcp,self --mca btl_tcp_if_include {2} "
      "--mca oob_tcp_if_include {2} \"$@\"\n",
      shell_quote(dir_), shell_quote(ctl), subnet());
  write_script(d / "setup.sh", setup, true);
  write_script(d / "teardown.sh", down, true);
  write_script(d / "agent.sh", agent, true);
  write_script(d / "mpirun.sh", launcher, true);
  write_script(d / "hosts", hostfile, false);

  install_handlers((d / "teardown.sh").string());
  up_ = true;
  std::string out;
  if (shell("sh " + shell_quote((d / "setup.sh").string()), &out) != 0) {
    teardown();
    std::string last, line;
    std::stringstream ss(out);
    while (std::getline(ss, line))
      if (!line.empty()) last = line;
    bad_input("--links: this system cannot build the emulated hosts (network namespaces, veth, "
              "bridge, tbf): {}", last.empty() ? "setup failed" : last);
  }
}

EmulatedHosts::~EmulatedHosts() {
  try {
    teardown();
  } catch (...) {
  }
}

void EmulatedHosts::teardown() {
  if (!up_) return;
  up_ = false;
  shell("sh " + shell_quote((fs::path(dir_) / "teardown.sh").string()));
  restore_handlers();
}

std::string EmulatedHosts::mpirun_command(int ranks) const {
  return fmt::format("{} -np {}", shell_quote((fs::path(dir_) / "mpirun.sh").string()), ranks);
}

std::string EmulatedHosts::description() const {
  return fmt::format(
      "{} emulated hosts (network namespaces {}-h0..h{}) on one bridge, each link limited to {} "
      "in both directions by tbf (burst {} KiB, latency {} ms; no added delay); MPI over TCP "
      "on {}",
      namespaces_.size() - 2, namespaces_.empty() ? "" : namespaces_[0].substr(0, namespaces_[0].size() - 3),
      namespaces_.size() - 3, rate_.name(), tbf_.burst_bytes >> 10, tbf_.latency_ms, subnet());
}

}  // namespace tandem::analysis
