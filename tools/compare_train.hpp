#pragma once
// `tandem compare --train`: `tandem train` runs of the same workload on one rank and under
// each sequence-parallel scheme at each P, as subprocesses of this binary, read back from
// their logs into a table and a report (analysis/compare_train.hpp).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace tandem::cli {

struct CompareTrainSetup {
  std::string exe;               // this tandem
  std::filesystem::path dir;     // the report folder
  std::string model;             // a GGUF file; empty: the tiny preset
  std::vector<int64_t> lengths;  // ctx values
  // (scheme as the registry configures it, P) pairs, in run order
  std::vector<std::pair<std::string, int>> schemes;
  std::function<std::string(int ranks)> launch;  // command prefix that starts P ranks
  bool in_process = false;       // P > 1 as threads of one process (--ranks P)
  std::string launcher;          // "mpirun" or "in-process threads"
  int threads = 0;               // per rank; 0: cores for one rank, cores / P for P ranks
  int cores = 1;
  int64_t steps = 3;
  bool checkpoint_layers = false;
  bool json = false;
};

void run_compare_train(const CompareTrainSetup& s);

}  // namespace tandem::cli
