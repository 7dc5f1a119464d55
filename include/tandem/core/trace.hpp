#pragma once
// Timeline of one process or rank: named spans (compute, communication) for Chrome /
// Perfetto trace files. Recording is off unless a Trace is attached; spans are a few
// per layer, never per token inside a kernel.
#include <string>
#include <vector>

#include "tandem/core/timer.hpp"

namespace tandem {

class Trace {
 public:
  struct Span {
    const char* name;  // static strings only
    const char* cat;   // "compute" or "comm"
    double begin, end; // now_seconds()
  };

  void add(const char* name, const char* cat, double begin, double end) {
    spans_.push_back({name, cat, begin, end});
  }
  const std::vector<Span>& spans() const { return spans_; }
  void clear() { spans_.clear(); }

  // Chrome trace "X" events (microseconds since `origin`), one JSON object per line,
  // comma-separated, for process `pid` (the rank) and thread 0 (compute) or 1 (comm).
  std::string chrome_events(int pid, double origin) const;

 private:
  std::vector<Span> spans_;
};

// Records [construction, destruction) on `trace` when it is not null.
class TraceSpan {
 public:
  TraceSpan(Trace* t, const char* name, const char* cat)
      : t_(t), name_(name), cat_(cat), begin_(t ? now_seconds() : 0) {}
  ~TraceSpan() {
    if (t_) t_->add(name_, cat_, begin_, now_seconds());
  }
  TraceSpan(const TraceSpan&) = delete;
  TraceSpan& operator=(const TraceSpan&) = delete;

 private:
  Trace* t_;
  const char* name_;
  const char* cat_;
  double begin_;
};

}  // namespace tandem
