#include "compare_run.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "tandem/analysis/links.hpp"
#include "tandem/core/error.hpp"

namespace tandem::cli {

namespace fs = std::filesystem;

Proc run_cmd(const std::string& cmd, const fs::path& scratch) {
  const fs::path err_file = scratch / ".compare-stderr.txt";
  Proc p;
  FILE* f = ::popen((cmd + " 2>" + analysis::shell_quote(err_file.string())).c_str(), "r");
  if (!f) fail(ErrorKind::Internal, "compare: cannot start '{}'", cmd);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) p.out.append(buf, n);
  const int status = ::pclose(f);
  p.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  std::ifstream in(err_file);
  p.err.assign(std::istreambuf_iterator<char>(in), {});
  std::error_code ec;
  fs::remove(err_file, ec);
  return p;
}

std::string last_line(const std::string& text) {
  std::string last, error, line;
  std::stringstream ss(text);
  while (std::getline(ss, line)) {
    if (std::none_of(line.begin(), line.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); }))
      continue;
    last = line;
    if (line.find("error") != std::string::npos || line.find("Segmentation") != std::string::npos ||
        line.find("signal") != std::string::npos)
      error = line;
  }
  const std::string& pick = error.empty() ? last : error;
  return pick.empty() ? "exited without a message" : pick;
}

std::string file_name(std::string label) {
  for (auto& c : label)
    if (c == ' ' || c == ':' || c == '=') c = c == '=' ? '_' : '-';
  return label;
}

}  // namespace tandem::cli
