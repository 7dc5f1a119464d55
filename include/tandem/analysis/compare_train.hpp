#pragma once
// `tandem compare --train`: the training workload (forward + backward + optimizer step of
// `tandem train`) under one rank and under each sequence-parallel scheme at each P, side by
// side: step time, tokens/s, peak memory per rank (measured) and the activations the plan
// holds per rank, communication per step, the losses (which must agree across schemes),
// and where parallel training starts to pay. The runs are launched by
// tools/cmd_compare.cpp; this header reads their logs and writes the table and report.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tandem/analysis/compare.hpp"

namespace tandem::analysis {

struct TrainMeasurement {
  std::string strategy;  // "single" (one rank) or the --sp scheme
  int ranks = 1;
  int threads = 1;       // per rank
  int64_t ctx = 0;       // tokens per sequence (batch 1)
  bool ok = false;
  std::string error;
  int64_t steps = 0;           // steps logged; the first is warm-up and not timed
  double step_seconds = 0;     // median over the timed steps
  double tokens_per_s = 0;     // ctx / step_seconds
  double flop_utilization = 0; // median, against the FMA peak of every rank's threads
  uint64_t peak_rss = 0;       // most of any rank (process peak resident set)
  uint64_t activation_bytes = 0;  // per rank, what the plan holds
  uint64_t attention_bytes = 0;   // per step, most of any rank (median)
  uint64_t allreduce_bytes = 0;
  double comm_wait_seconds = 0;   // per step, most of any rank (median)
  std::vector<double> losses;     // per step

  std::string label() const;  // "single", "zigzag P=2"
};

struct TrainComparison {
  std::string model;  // "--preset tiny" or a GGUF path
  std::string task;   // passkey
  std::string launcher;
  int cores = 1;
  int64_t steps = 0;  // per run
  bool checkpoint_layers = false;
  std::vector<int64_t> lengths;
  std::vector<std::string> skipped;  // schemes with no training path, and why
  std::vector<TrainMeasurement> runs;
  double wall_seconds = 0;
};

// Fills m from the text of a run's log.jsonl (one JSON object per step). Throws
// Error(BadInput) naming `what` for a log without steps or with a malformed line.
void read_train_log(TrainMeasurement& m, const std::string& jsonl, const std::string& what);

// Each P-rank scheme's step-time speedup over the one-rank run at each ctx, and the ctx from
// which it stays faster.
std::vector<Crossover> train_crossovers(const TrainComparison& r);
// The largest difference of a run's per-step losses from the one-rank run's at its ctx
// (the schemes compute the same gradients); negative where not comparable.
double loss_difference(const TrainComparison& r, const TrainMeasurement& run);

std::string train_table(const TrainComparison& r);
std::vector<std::string> train_findings(const TrainComparison& r);
nlohmann::json to_json(const TrainComparison& r);

// Writes train.json, train_step.svg, train_memory.svg and train.html into `dir` (created if
// missing). Returns the files written, relative to `dir`.
std::vector<std::string> write_train_report(const TrainComparison& r, const std::string& dir);

}  // namespace tandem::analysis
