#pragma once
// The server's counters and latency histograms, written as Prometheus text with the
// scheduler's gauges (queue, active sequences, KV pages, batch, prefix cache).
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "tandem/serve/sp_lane.hpp"

namespace tandem::serve {

struct SchedulerStats;

class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,    1,     2.5,  5,     10,  30};
  void observe(double seconds);
  // "# TYPE name histogram" and its _bucket/_sum/_count lines.
  std::string text(const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mu_;
  std::array<int64_t, kBounds.size() + 1> counts_{};
  double sum_ = 0;
  int64_t n_ = 0;
};

class Metrics {
 public:
  void request(const std::string& endpoint, int status);
  Histogram ttft, token_latency;
  // With sp: the sequence-parallel lane's gauges and counters too.
  std::string text(const SchedulerStats& s, const std::optional<SpLaneStats>& sp = std::nullopt) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
};

}  // namespace tandem::serve
