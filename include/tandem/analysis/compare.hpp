#pragma once
// `tandem compare`: the same prefill + decode workload under the naive single pipeline,
// the optimized single pipeline and each sequence-parallel scheme, measured side by side
// with the planner's prediction next to each measurement. This header holds the results,
// their JSON form, the table, the crossover analysis and the report folder writer; the
// runs themselves are launched by tools/cmd_compare.cpp.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tandem/analysis/planner.hpp"
#include "tandem/runtime/results.hpp"

namespace tandem::analysis {

// The naive pipeline recomputes the whole sequence for every token: it decodes at most
// this many tokens (its tokens/s is a rate, so a few steps measure it).
inline constexpr int kNaiveDecodeTokens = 3;

// What one rank reported: the runtime's typed result (`tandem prefill --json` per_rank).
using RankMeasurement = RankReport;

// The planner's figures for the same strategy, N and P.
struct Prediction {
  std::string layout;
  double prefill_seconds = 0, decode_seconds_per_token = 0;
  double memory_bytes_per_device = 0, bytes_communicated_per_device = 0;
};

struct RunMeasurement {
  std::string strategy;  // naive, single, or the --sp scheme (ring, zigzag, hybrid:2x2, ...)
  int ranks = 1;
  int threads = 1;       // per rank
  int64_t tokens = 0;    // N
  bool ok = false;
  std::string error;     // why the run failed (when !ok)
  double prefill_seconds = 0, prefill_tokens_per_s = 0;
  // With repeated prefills (prefill_seconds their median): each timed one, and the
  // process's first (a warm-up, with the one-time costs of a fresh process).
  std::vector<double> prefill_seconds_each;
  double prefill_first_seconds = 0;
  std::optional<double> decode_tokens_per_s;  // absent: decode not run or failed
  std::string decode_error;
  std::vector<RankMeasurement> per_rank;
  std::optional<Prediction> predicted;
  // CoreProbe's rates on each of the node's cores around the run (before the prefill,
  // between it and the decode, after: the median per core and kind); empty: not probed.
  // The cores of a shared host change speed by the second: a run on a slow core is slow,
  // and the prediction is made for the cores as they ran (HardwareProfile::core_rates).
  std::vector<CoreRates> core_rates;
  std::string trace_file;  // relative to the report folder; empty: none
  // compare --rounds R > 1: the configuration was measured R times, each round a pass over
  // every configuration, so rounds of one configuration lie far apart in time. The row
  // holds the round with the median prefill (its ranks, memory, trace and cores), the
  // decode rate of the round with the median decode, and as its predictions the median of
  // the rounds' predictions (each on its own cores); each round's figures are here, in order.
  struct Round {
    bool ok = false;
    double prefill_seconds = 0;
    std::optional<double> decode_tokens_per_s;
    std::optional<Prediction> predicted;
    std::vector<CoreRates> core_rates;
  };
  std::vector<Round> rounds;                // empty: measured once
  int prefill_round = 0, decode_round = 0;  // indexes into `rounds`

  std::string label() const;  // "single", "ring P=2"
  double max_rank_seconds() const;
  double peak_kv_activation_bytes() const;  // max over ranks of KV + activations
  double weights_bytes() const;             // max over ranks
  // Measured peak resident set per rank (max over ranks; a share of the process where
  // ranks share one), 0 where unknown; and the same less the weights and the runtime's
  // baseline (what sequence parallelism divides).
  double peak_rss_bytes() const;
  double peak_rss_beyond_weights_bytes() const;
  double bytes_sent_per_rank() const;       // max over ranks
  double comm_wait_seconds() const;         // max over ranks
  double hidden_fraction() const;           // mean over ranks with communication
};

// How the P > 1 ranks were linked when `--links RATE` emulated separate hosts.
struct LinksSetting {
  std::string rate;            // canonical, "1gbit"
  double bits_per_second = 0;
  std::string description;     // namespaces, bridge, tbf settings
  std::vector<std::string> namespaces;
  // MPI ping-pong across one emulated link (tandem comm-probe); 0: not measured.
  double measured_bandwidth = 0, measured_latency = 0;  // bytes/s, s one way
};

struct CompareResults {
  std::string model;
  bool synthetic_model = false;
  std::string launcher;      // "mpirun" or "in-process threads"
  std::string launcher_note; // why
  int cores = 1;
  int decode_tokens = 0;
  int rounds = 1;         // compare --rounds: each run the median of this many
  int64_t naive_max = 0;  // the naive pipeline runs only for N <= this
  std::vector<int64_t> lengths;
  std::vector<RunMeasurement> runs;
  double wall_seconds = 0;
  std::optional<LinksSetting> links;  // absent: ranks on this host's shared memory / loopback
  std::string planner_hardware = "cpu-this";  // profile of the planner column (name or file)
};

// The crossover of one P-rank scheme against the single optimized pipeline.
struct Crossover {
  std::string label;  // "ring P=2"
  // (N, single prefill seconds / scheme prefill seconds) at each N both measured, by N;
  // above 1 the scheme is faster.
  std::vector<std::pair<int64_t, double>> speedup;
  // The smallest measured N from which the scheme's prefill is faster than single's (by
  // more than kLevelFraction) at that N and at every longer N measured; empty: none in
  // the measured range.
  std::optional<int64_t> from_tokens;
  // "N >= 1024 (1.40x at N=4096)" or "none in the measured range (N = 256..4096)".
  std::string summary() const;
};
// The crossover of `label` from its (N, speedup) pairs, in any order.
Crossover make_crossover(std::string label, std::vector<std::pair<int64_t, double>> speedup);
// Timings within 3% count as level (a shared machine is that noisy).
inline constexpr double kLevelFraction = 0.03;

// A measured prefill (`tandem prefill --json`, read with prefill_report_from_json) into
// the run (strategy, ranks and threads are the caller's).
void set_prefill(RunMeasurement& run, const PrefillReport& report);
// One configuration's rounds (each measured and predicted on its own) as one row: see
// RunMeasurement::rounds. The median of an even count is the faster middle round. A
// round that failed counts only where every round failed (the row is then the first).
RunMeasurement median_of_rounds(std::vector<RunMeasurement> rounds);
// The planner's figures for a compare run: the plan of exactly its configuration
// ("single" is the local scheme; "naive" has none) with request's model, profile and
// devices per node (0: all ranks on one node), or nothing when the planner cannot predict
// it (the reason in *why).
std::optional<Prediction> predict_run(const PlanRequest& request, const RunMeasurement& run,
                                      std::string* why = nullptr);

nlohmann::json to_json(const CompareResults& r);
// The readable table (one row per run) printed on stdout.
std::string compare_table(const CompareResults& r);
// The crossover of each P-rank scheme, in the order first run.
std::vector<Crossover> crossovers(const CompareResults& r);
// Lines printed under the table: the links setting (if any) and each scheme's crossover.
std::string crossover_table(const CompareResults& r);
// Sentences on where the P-rank schemes beat the single optimized pipeline (the crossover).
std::vector<std::string> crossover_findings(const CompareResults& r);

// Writes results.json, latency.svg, decode.svg, memory.svg, memory_rss.svg, time_split.svg and index.html into `dir`
// (created if missing). Returns the files written, relative to `dir`.
std::vector<std::string> write_report(const CompareResults& r, const std::string& dir);

}  // namespace tandem::analysis
