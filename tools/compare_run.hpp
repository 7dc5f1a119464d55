#pragma once
// Subprocesses of `tandem compare`: a command run with its output captured, and the error
// line of a failed one.
#include <filesystem>
#include <string>

namespace tandem::cli {

struct Proc {
  int code = -1;
  std::string out, err;
};

// Runs a shell command; stdout captured, stderr captured through a file in `scratch`.
Proc run_cmd(const std::string& cmd, const std::filesystem::path& scratch);

// The error message in a subprocess's stderr: its last "error" line (tandem's own or
// mpirun's), else its last line with any letters (mpirun frames messages with dashes).
std::string last_line(const std::string& text);

// A run label as a file name: "hybrid:2x2 P=4" -> "hybrid-2x2-P_4".
std::string file_name(std::string label);

}  // namespace tandem::cli
