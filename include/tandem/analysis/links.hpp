#pragma once
// Emulated slow links for `tandem compare --links RATE`: the P ranks run as separate
// hosts on this machine. Each host is a network namespace with one veth to a bridge that
// lives in a namespace of its own; tbf limits every host link to RATE in both directions
// (the host's egress and the bridge port's egress); mpirun runs in a control namespace on
// the same bridge (its link is not limited: it carries only start-up traffic) and starts
// the ranks through a generated rsh agent (`ip netns exec NS unshare --uts`, one hostname
// and TMPDIR per host), MPI over TCP on the emulated subnet. Everything is torn down by
// the destructor, and on SIGINT/SIGTERM/SIGHUP by a signal handler; namespaces left by a
// process that died anyway are removed when the next one starts. Needs root (netem is
// not used: no delay is added, only the rate is limited).
#include <cstdint>
#include <string>
#include <vector>

namespace tandem::analysis {

// A link rate: a positive number and kbit, mbit or gbit ("1gbit", "10gbit", "500mbit",
// "2.5gbit"), from 1mbit to 400gbit.
struct LinkRate {
  double bits_per_second = 0;
  std::string name() const;  // canonical: "1gbit", "500mbit", "2.5gbit"
};
// Throws Error(BadInput) naming `flag` on anything else.
LinkRate parse_link_rate(const std::string& text, const std::string& flag = "--links");

// The tbf qdisc for a rate: burst ~2 ms of traffic (256 KiB at 1gbit) capped at 1 MiB,
// and a queue of ~6 MB expressed as latency (50 ms at 1gbit, 5 ms at 10gbit).
struct TbfSettings {
  int64_t rate_bits = 0, burst_bytes = 0;
  int latency_ms = 0;
  std::string tc_args() const;  // "tbf rate 1000000000bit burst 262144 latency 50ms"
};
TbfSettings tbf_settings(const LinkRate& rate);

// Namespace names are "<prefix>-<pid>-<role>"; the scratch folder is
// <temp>/<prefix>-<pid>-XXXXXX.
inline constexpr const char* kLinksPrefix = "tandem-links";

class EmulatedHosts {
 public:
  // Checks root and the tools (ip, tc, unshare, mpirun), removes stale namespaces, builds
  // `hosts` hosts on 10.77.0.0/24 and installs the signal handlers. Throws
  // Error(BadInput) naming --links when this system cannot do it (after undoing any part
  // already made).
  EmulatedHosts(int hosts, const LinkRate& rate);
  ~EmulatedHosts();
  EmulatedHosts(const EmulatedHosts&) = delete;
  EmulatedHosts& operator=(const EmulatedHosts&) = delete;

  // Shell words that start `ranks` ranks, one per host (append the program and its
  // arguments): "'<dir>/mpirun.sh' -np 2".
  std::string mpirun_command(int ranks) const;
  const std::vector<std::string>& namespaces() const { return namespaces_; }
  const TbfSettings& tbf() const { return tbf_; }
  std::string subnet() const { return "10.77.0.0/24"; }
  // One sentence on the setup, for the report.
  std::string description() const;
  // Kills what still runs in the namespaces, deletes them and the scratch folder.
  // Idempotent; the destructor calls it.
  void teardown();

 private:
  std::vector<std::string> namespaces_;  // bridge, control, then the hosts h0..h(P-1)
  std::string dir_;
  LinkRate rate_;
  TbfSettings tbf_;
  bool up_ = false;
};

// Throws Error(BadInput) naming --links unless this process is root and ip, tc, unshare
// and mpirun are on PATH.
void check_links_supported();

// Tears down namespaces and scratch folders named <kLinksPrefix>-<pid>-* whose process no
// longer runs. Returns the namespaces removed.
std::vector<std::string> remove_stale_links();

// Shell helpers shared with tools/cmd_compare.cpp: `s` in single quotes for sh; whether
// an executable `prog` is in a folder of $PATH.
std::string shell_quote(const std::string& s);
bool program_on_path(const std::string& prog);

// Every network namespace whose name starts with `prefix` (from /run/netns).
std::vector<std::string> list_namespaces(const std::string& prefix);

}  // namespace tandem::analysis
