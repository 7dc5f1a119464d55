#pragma once
// Typed results of a session's runs, with their JSON form defined once: the CLI prints
// them (`prefill --json`, `generate --json`) and `tandem compare` reads them back from
// its subprocesses with the same functions.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tandem/runtime/generate.hpp"

namespace tandem {

// What one rank measured in a prefill.
struct RankReport {
  int rank = 0;
  int64_t tokens = 0;            // tokens of its shard
  double seconds = 0;            // its forward pass
  double weights_bytes = 0;      // resident weight memory (mapping less dropped, plus copies)
  double kv_bytes = 0;           // its KV cache as allocated
  double activation_bytes = 0;   // activation arenas held
  double activation_unplanned_bytes = 0;  // the same with one buffer per value
  double bytes_sent = 0, bytes_received = 0;
  double comm_wait_seconds = 0;  // blocked on communication
  // Its communication in flight: the union of the intervals from each post (or
  // collective's start) to its observed completion (comm::CommStats::transfer_seconds).
  // 0 in results written before it was measured (they had comm_alone_seconds, a
  // ping-pong estimate, instead; it is no longer read).
  double comm_transfer_seconds = 0;
  double head_pairs = 0;         // visible (query, key, head) triples its attention computed
  double workspace_bytes = 0;    // its attention strategy's buffers (the scheme's estimate)
  double logits_bytes = 0;       // rows of logits the command holds (logits: all it writes)
  // Measured: the process as the operating system counts it (0 where unknown). A process
  // holds every in-process rank (--ranks P): its figures are then the whole process's.
  double peak_rss_bytes = 0;      // the process's peak resident set
  double baseline_rss_bytes = 0;  // resident before the weights were laid out: program,
                                  // libraries, MPI runtime, thread stacks
  double baseline_file_rss_bytes = 0;  // of the baseline, pages of mapped files (program, libraries)
  double file_rss_bytes = 0;      // resident pages of mapped files at the end (model, libraries)
  double process_ranks = 1;       // ranks in this process
  // Share of the communication that compute hid: 1 - waited / in flight, in [0, 1]; 0
  // where nothing was in flight.
  double hidden_fraction() const;
  // What the accounting (weights, KV, activations, workspace) counts for the process.
  double accounted_bytes() const;
  // Peak RSS less the baseline and the accounting (negative where the mapped file's pages
  // were never all resident); 0 where RSS is unknown.
  double unaccounted_bytes() const;
  // Fills the measured fields (peak RSS, baseline, mapped-file pages) from this process.
  void measure_process();
  // "peak RSS X MiB = baseline B (...) + weights W + KV K + activations A + workspace S +
  // unaccounted U MiB (mapped-file pages resident at the end: F MiB)"; empty where the
  // peak is unknown.
  std::string describe_memory() const;
};

struct PrefillReport {
  std::string model, scheme;
  int ranks = 1, threads_per_rank = 1;
  int64_t tokens = 0;
  double seconds = 0;       // the slowest rank (with repeats: the median run's)
  double tokens_per_s = 0;
  std::vector<RankReport> per_rank;  // of the run `seconds` is
  // With `prefill --warmup W --repeat R`: W untimed prefills ran first, and seconds_each
  // holds the R timed ones (each the slowest rank's); first_seconds is the process's
  // first prefill (warm-up or timed). Empty / 0 for one prefill.
  int warmup = 0;
  std::vector<double> seconds_each;
  double first_seconds = 0;
};

struct GenerateReport {
  std::string model, scheme;
  int ranks = 1, threads_per_rank = 1;
  uint64_t seed = 0;
  GenerateStats stats;
  std::vector<int32_t> tokens;  // the generated ids
  // Rank 0's process: its --max-memory estimate, and measured (0 where unknown) its
  // peak resident set and the baseline before the weights were laid out...
  double estimate_bytes = 0, peak_rss_bytes = 0, baseline_rss_bytes = 0;
  // ...and its accounting beside them (the memory fields of a RankReport; JSON "memory").
  RankReport memory;
};

nlohmann::json to_json(const RankReport& r);
nlohmann::json to_json(const PrefillReport& r);
nlohmann::json to_json(const GenerateReport& r);
// Throw Error(BadInput) naming `what` and the field on a malformed document.
RankReport rank_report_from_json(const nlohmann::json& j, const std::string& what);
PrefillReport prefill_report_from_json(const nlohmann::json& j, const std::string& what);
GenerateReport generate_report_from_json(const nlohmann::json& j, const std::string& what);

}  // namespace tandem
