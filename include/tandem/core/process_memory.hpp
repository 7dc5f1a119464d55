#pragma once
// The memory of this process as the operating system counts it (Linux /proc/self/status):
// what a rank's figures of weights, KV and activations are checked against. Under mpirun a
// process is one rank; with in-process ranks (--ranks P) it holds all of them.
#include <cstddef>
#include <cstdint>

namespace tandem {

struct ProcessMemory {
  bool known = false;     // false where /proc/self/status cannot be read (not Linux)
  uint64_t peak_rss = 0;  // VmHWM: the most resident at once since the process started
  uint64_t rss = 0;       // VmRSS: resident now
  uint64_t rss_anon = 0;  // RssAnon: heap, stacks, anonymous maps (copies of weights, KV, ...)
  uint64_t rss_file = 0;  // RssFile: pages of mapped files (the model file, libraries)
};

ProcessMemory process_memory();

// Bytes of [p, p + n) mapped and resident in this process now (/proc/self/pagemap's
// present bits, whole pages); -1 where that cannot be read.
int64_t resident_bytes_of(const void* p, size_t n);

// The process's resident set before the run's first large allocation (program, libraries,
// MPI runtime, thread stacks): marked once (later calls keep the first figure) where the
// command is about to lay out the weights; 0 until marked.
void mark_baseline_rss();
uint64_t baseline_rss();
// The part of that baseline in pages of mapped files (the program and its libraries,
// MPI's included); the rest is anonymous memory (heap, stacks, the MPI runtime's state).
uint64_t baseline_file_rss();

}  // namespace tandem
