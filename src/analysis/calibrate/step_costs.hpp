#pragma once
// Internal to calibrate: the runtime's graph build per step shape, measured.
#include <vector>

#include "tandem/analysis/calibrate.hpp"

#include "tandem/analysis/curve.hpp"

namespace tandem::analysis {

// Seconds a forward step's graph takes to build (and its buffers to be first written)
// beyond a replay of it: axes "threads" and "layers".
Curve graph_build_curve(const std::vector<double>& threads);
// Seconds of the first read of a page of a mapped file the page cache holds (the
// runtime's token-embedding table stays mapped: a prompt faults in its rows' pages).
Curve file_fault_curve();

}  // namespace tandem::analysis
