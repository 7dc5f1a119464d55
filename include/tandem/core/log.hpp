#pragma once
// Minimal leveled logging to stderr.
#include <fmt/format.h>

#include <cstdio>

namespace tandem {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };
LogLevel log_level();
void set_log_level(LogLevel level);

template <typename... Args>
void log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (static_cast<int>(level) > static_cast<int>(log_level())) return;
  fmt::print(stderr, "{}\n", fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace tandem
