#pragma once
// Pieces shared by the subcommands.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "tandem/runtime/engine.hpp"

namespace tandem::cli {

// A whole number written in decimal (an optional '-' and digits, nothing else) from lo to
// hi; throws Error(BadInput) "FLAG: 'TEXT' is not a whole number from LO to HI".
int64_t parse_int_in(std::string_view text, std::string_view flag, int64_t lo, int64_t hi);
// A comma list of at most max_items such numbers ("256,1024"; no empty items); throws
// Error(BadInput) naming `flag`.
std::vector<int64_t> parse_int_list(std::string_view text, std::string_view flag, int64_t lo,
                                    int64_t hi, size_t max_items = 64);
// The bound of a whole-number flag: parse_int_in's rule as a CLI11 check, so the value is
// refused before CLI11 converts it (exit 2, "FLAG: 'TEXT' is not a whole number from LO to
// HI" and a pointer to --help). For a list option (->delimiter), each item.
CLI::Validator int_in(int64_t lo, int64_t hi);

// The CPU's model name (/proc/cpuinfo), "unknown CPU" when it does not say.
std::string cpu_model();
// Where compare keeps this machine's calibrated profile for `threads` threads:
// $XDG_CACHE_HOME/tandem/profiles/ (else ~/.cache/tandem/profiles/), one file per CPU
// model and thread count.
std::string machine_profile_path(int threads);

// The non-empty items of a comma-separated list.
std::vector<std::string> split_list(const std::string& text);

// Adds -t/--threads (default: the cores available).
CLI::Option* add_threads_option(CLI::App* sub, int& threads);
// --kernels optimized|reference (the plain scalar references make the naive pipeline)
// and the switches of the other sequential optimizations.
struct EngineFlags {
  std::string kernels = "optimized";
  bool no_flash_attn = false, no_memory_plan = false, no_fusion = false, no_graph_reuse = false;
  int64_t kv_page = -1;  // --kv-page; -1: kDefaultKvPage on the local scheme, else contiguous
  std::string kv_type = "f32";
  bool reference() const { return kernels == "reference"; }
  // The engine options of the flags; the default KV page depends on the scheme (local:
  // kDefaultKvPage; sequence-parallel: one contiguous run per rank, what the ring reads
  // fastest).
  EngineOptions options(bool local = true) const;
  // 256: decode at depth 8192 on tiny-f16 ran as fast as on one contiguous buffer,
  // pages of 64 about 20% slower and of 16 about 35% (tandem bench -d 8192, quiet machine).
  static constexpr int64_t kDefaultKvPage = 256;
};
void add_engine_options(CLI::App* sub, EngineFlags& f);

// Parses "1,2,3" (commas and/or spaces) into ids; throws Error(BadInput) naming `flag`.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag);
// n token ids drawn uniformly from [0, vocab) with a fixed seed (--random-tokens).
std::vector<int32_t> random_token_ids(int64_t n, int64_t vocab, uint64_t seed);
// The whole text file `path` given as `flag`, at most kMaxTextBytes (512 MiB, the
// tokenizer's limit; core/text_file.hpp): a larger file is refused before it is read, a
// pipe or device past that many bytes. Throws Error(BadInput) naming the flag and file.
std::string read_text_flag(const std::string& path, const std::string& flag);

}  // namespace tandem::cli
