#pragma once
// Work done by the encoders, counted per calling thread: the tests bound the cost of long
// inputs by these counts (work per byte, growth with the input's length), not by time.
#include <cstdint>

namespace tandem::detail {

struct TokenizerWork {
  uint64_t regex_calls = 0;    // pattern searches of the pre-tokenizer (pcre2_match calls)
  uint64_t lookups = 0;        // texts and pairs looked up in the vocabulary / merge table
  uint64_t bytes_looked_up = 0;  // bytes of those texts (pairs: 0; hashing costs per byte)
  uint64_t queue_pops = 0;     // merge candidates taken from the queue (stale ones included)
  uint64_t total() const { return regex_calls + lookups + bytes_looked_up + queue_pops; }
};

// This thread's counters; reset to TokenizerWork{} to start a measurement. The encoders
// add to them once per call (or per pre-token), not in their inner loops.
inline thread_local TokenizerWork tokenizer_work;

}  // namespace tandem::detail
