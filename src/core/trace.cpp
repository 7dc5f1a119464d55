#include "tandem/core/trace.hpp"

#include <fmt/format.h>

#include <cstring>

namespace tandem {

std::string Trace::chrome_events(int pid, double origin) const {
  std::string out;
  for (const auto& s : spans_) {
    if (!out.empty()) out += ",\n";
    const int tid = std::strcmp(s.cat, "comm") == 0 ? 1 : 0;
    out += fmt::format(R"({{"name":"{}","cat":"{}","ph":"X","pid":{},"tid":{},"ts":{:.3f},"dur":{:.3f}}})",
                       s.name, s.cat, pid, tid, (s.begin - origin) * 1e6, (s.end - s.begin) * 1e6);
  }
  return out;
}

}  // namespace tandem
