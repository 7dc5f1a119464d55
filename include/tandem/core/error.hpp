#pragma once
// Errors: every failure a user can cause is an Error carrying an exit code and a
// one-line message that names the file, field or flag at fault.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace tandem {

// Process exit codes (documented in README.md).
enum class ErrorKind : int {
  Internal = 1,   // a bug or an unexpected system failure
  BadInput = 2,   // a bad file, flag or value given by the user
  Resource = 3,   // not enough memory (or over --max-memory)
  Comm = 4,       // a peer failed or a collective timed out
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return static_cast<int>(kind_); }

 private:
  ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(kind, fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void bad_input(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(ErrorKind::BadInput, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace tandem

// Always-on invariant check (guards memory safety); throws ErrorKind::Internal.
#define TD_CHECK(cond)                                                                    \
  do {                                                                                    \
    if (!(cond))                                                                          \
      ::tandem::fail(::tandem::ErrorKind::Internal, "internal check failed: {} ({}:{})", \
                     #cond, __FILE__, __LINE__);                                          \
  } while (0)

// Debug-only check for hot loops.
#ifdef NDEBUG
#define TD_DCHECK(cond) ((void)0)
#else
#define TD_DCHECK(cond) TD_CHECK(cond)
#endif
