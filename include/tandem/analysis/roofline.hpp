#pragma once
// This machine's roofline: memory read bandwidth and FMA peak, measured with T threads,
// and a small JSON cache of the measurements so every `tandem bench` row can be set
// against them. Units: bytes/s and FLOP/s (2 FLOPs per FMA lane), all threads together.
//
// Cache file: --roofline-file, else $TANDEM_ROOFLINE_FILE, else
// $XDG_CACHE_HOME/tandem/roofline.json, else ~/.cache/tandem/roofline.json. It holds one
// entry per thread count:
//   {"version": 1, "entries": [{"threads": 2, "read_bandwidth": 1.2e10,
//    "fma_peak": 2.3e11, "isa": "avx512f", "buffer_bytes": 1073741824}, ...]}
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tandem::analysis {

struct Roofline {
  int threads = 0;
  double read_bandwidth = 0;  // bytes/s: stream read of a buffer much larger than L3
  double fma_peak = 0;        // FLOP/s: register-resident f32 FMA chains
  std::string isa;            // vector width used: "avx512f", "avx2" or "scalar"
  size_t buffer_bytes = 0;    // size of the buffer the bandwidth was read from
};

struct RooflineOptions {
  int threads = 1;
  size_t buffer_bytes = size_t(1) << 30;  // 1 GiB
  int passes = 5;                         // best of this many passes
};

// Measures both figures (takes about a second per GiB of buffer on a laptop-class
// machine). Throws Error(Resource) when the buffer cannot be allocated.
Roofline measure_roofline(const RooflineOptions& opts);

// The vector instruction set the measurement would use on this CPU.
std::string roofline_isa();

// The cache file path (see the header comment), without --roofline-file.
std::string default_roofline_path();

// Entries of a cache file; empty when the file does not exist. Throws Error(BadInput)
// naming the file and field when it exists but is malformed.
std::vector<Roofline> load_rooflines(const std::string& path);
// The entry for `threads`, if the file has one.
std::optional<Roofline> find_roofline(const std::vector<Roofline>& entries, int threads);
// Replaces (or adds) the entry for r.threads and writes the file, creating its folder.
// Throws Error(BadInput) naming the path when it cannot be written.
void save_roofline(const std::string& path, const Roofline& r);

nlohmann::json roofline_to_json(const Roofline& r);
// Throws Error(BadInput) prefixed by `where` naming the bad field.
Roofline roofline_from_json(const nlohmann::json& j, const std::string& where);

}  // namespace tandem::analysis
