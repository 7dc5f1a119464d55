#pragma once
// Paths tests need: the shared reference folder, the tandem binary, a scratch dir.
#include <string>

namespace tandem::test {
// ../shared (or $TANDEM_SHARED). Tests that need it fail when it is missing.
std::string shared_dir();
std::string shared_path(const std::string& rel);
// The built `tandem` program.
std::string tandem_bin();
// A script of this source tree's scripts/ folder.
std::string script_path(const std::string& name);
// A fresh temporary directory for this test process (removed at exit).
std::string temp_dir();
// Runs a shell command; returns its exit code and stdout+stderr.
struct RunResult { int code; std::string out; };
RunResult run(const std::string& cmd);
// The same, also measuring the peak resident set size of the largest process of the
// command's tree (the shell, and every descendant reaped before it ends: mpirun's ranks).
struct MeasuredRun { int code; std::string out; double peak_rss_bytes; };
MeasuredRun run_measured(const std::string& cmd);
// "timeout T mpirun --allow-run-as-root --oversubscribe --bind-to none -np NP " (a prefix
// for a command run under a real mpirun, bounded so that no test hangs).
std::string mpirun(int np, int timeout_s = 120);

// True in a sanitizer build (scripts/sanitize.sh): programs run several times slower and
// need their address space.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

// A TCP port on 127.0.0.1 free a moment ago (for a server a test starts).
int free_port();

// The whole file as text (empty when it cannot be read).
std::string read_text(const std::string& path);
}  // namespace tandem::test
