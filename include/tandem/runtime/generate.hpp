#pragma once
// Text generation: prefill the prompt, then decode one token at a time against the
// KV cache, sampling each next token.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "tandem/core/timer.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/sampler.hpp"

namespace tandem {

struct GenerateParams {
  int64_t n_predict = 32;   // tokens to generate at most
  SamplerParams sampler;
  bool stop_at_eog = true;  // stop after an end-of-generation token
  bool kv_cache = true;     // false: recompute the whole sequence for every new token
};

struct GenerateStats {
  int64_t n_prompt = 0;
  int64_t n_generated = 0;
  int64_t n_decode_steps = 0;   // forward passes of one token
  double prompt_seconds = 0;    // prefill forward time
  double decode_seconds = 0;    // time of the decode forward passes
  double ttft_seconds = 0;      // start to first sampled token
  std::vector<double> step_seconds;  // each decode forward pass, in order
  double prompt_tokens_per_s() const { return prompt_seconds > 0 ? n_prompt / prompt_seconds : 0; }
  double gen_tokens_per_s() const {
    return decode_seconds > 0 ? n_decode_steps / decode_seconds : 0;
  }
};

// Runs generation from `prompt` (positions 0..); `cache` must be empty with capacity
// for prompt + n_predict tokens. on_token is called with each new token as soon as it
// is sampled. Returns timing; the generated ids are appended to `out` when not null.
GenerateStats generate(Engine& engine, KVCache& cache, std::span<const int32_t> prompt,
                       const GenerateParams& params, const std::function<void(int32_t)>& on_token,
                       std::vector<int32_t>* out = nullptr);

// The decode half of generation, shared by every strategy: samples from `logits`
// (the last prompt token's row), then feeds each sampled token back at positions
// start_pos, start_pos+1, ... until n_predict tokens or an end-of-generation token.
// `since` is the start of the request (for time to first token); fills st's
// generation fields. With `recompute` (the tokens so far, from position 0) every step
// runs the whole sequence again instead of using the KV cache.
void decode_loop(Engine& engine, KVCache& cache, std::vector<float>& logits, int32_t start_pos,
                 const GenerateParams& params, const Stopwatch& since, GenerateStats& st,
                 const std::function<void(int32_t)>& on_token, std::vector<int32_t>* out,
                 std::vector<int32_t>* recompute = nullptr);

// Several continuations of one prompt (llama.cpp's --parallel): the prompt is
// prefilled once into a paged cache, every other sequence forks it (sharing the
// prompt's pages; a partial last page is copied on its first write), and the
// sequences then decode one after another (decode_loop), sequence i sampling with
// seed + i. Needs the KV cache (params.kv_cache).
struct ParallelResult {
  std::vector<std::vector<int32_t>> tokens;  // generated ids per sequence
  GenerateStats stats;         // n_generated and decode steps summed over sequences
  PagedKVStats kv;             // the pool at the end (its peak: nothing is freed before)
  size_t kv_used_bytes = 0;    // pages in use, shared pages counted once
  size_t kv_unshared_bytes = 0;  // the same sequences in caches of their own
};
ParallelResult generate_parallel(Engine& engine, std::span<const int32_t> prompt,
                                 const GenerateParams& params, int n_seq,
                                 const KVCacheOptions& kv,
                                 const std::function<void(int, int32_t)>& on_token = {});

// Buffers bytes so that only whole UTF-8 characters are emitted (a token may end in
// the middle of a multi-byte character).
class Utf8Stream {
 public:
  // Returns the complete characters available after appending `bytes`.
  std::string push(std::string_view bytes);
  // Whatever is left (an incomplete tail, emitted as is).
  std::string flush();

 private:
  std::string pending_;
};

}  // namespace tandem
