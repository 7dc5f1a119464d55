#pragma once
// `tandem bench-serve`: a load generator for OpenAI-compatible servers (tandem serve,
// llama.cpp's llama-server, vLLM), in the manner of vLLM's serving benchmark. Requests
// go to POST /v1/completions with the prompt as token ids (so its length is exact
// whatever the server's tokenizer), streamed (server-sent events), `ignore_eos` set so
// every request produces max_tokens tokens, greedy. Per request it records when the
// first token and each later one arrived; the summary gives throughput and the time to
// first token and inter-token latency (median, p99).
#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::loadgen {

struct LoadOptions {
  std::string url = "http://127.0.0.1:8080";  // scheme://host:port[/prefix]
  int concurrency = 1;     // requests in flight at once
  int requests = 16;       // requests in all
  int prompt_tokens = 128;
  int max_tokens = 128;
  int shared_prefix = 0;   // first tokens of every prompt equal (a system prompt), <= prompt_tokens
  std::string model;       // "model" field (empty: omitted)
  std::string api_key;     // Authorization: Bearer KEY (empty: none)
  uint64_t seed = 1;       // prompt token ids, drawn from [token_lo, token_hi)
  int token_lo = 100, token_hi = 1000;
  double timeout_s = 600;  // per request
  // Called after each request ends (done, total), from the worker threads, one at a time.
  std::function<void(int, int)> progress;
};

// One request as measured. Times in seconds since the run started.
struct RequestResult {
  bool ok = false;
  std::string error;       // why not ok: HTTP status and the server's message, or the transport error
  double start = 0, first_token = 0, end = 0;
  std::vector<double> token_times;  // arrival of each streamed piece with text
  int64_t output_tokens = 0;        // usage.completion_tokens when sent, else pieces counted
  int64_t prompt_tokens = 0;        // usage.prompt_tokens when sent, else what was sent
};

struct Percentiles {
  double mean = 0, median = 0, p99 = 0, max = 0;
};
// Over values (any order); all zero when empty. Percentile p of n sorted values: linear
// interpolation between ranks (n - 1) * p.
Percentiles percentiles(std::vector<double> values);

struct Summary {
  int requests = 0, ok = 0, failed = 0, concurrency = 0;
  int prompt_tokens = 0, max_tokens = 0, shared_prefix = 0;
  double duration_s = 0;
  double requests_per_s = 0, output_tokens_per_s = 0, total_tokens_per_s = 0;
  int64_t output_tokens = 0, input_tokens = 0;
  Percentiles ttft_ms, itl_ms, e2e_ms;  // time to first token, gaps between tokens, whole request
  std::vector<std::string> errors;      // distinct error messages, at most a few
  std::vector<double> ttft_each_ms;     // each request's time to first token, in request order (-1: failed)
};
Summary summarize(const std::vector<RequestResult>& results, const LoadOptions& o, double duration_s);
nlohmann::json to_json(const Summary& s);
std::string format_summary(const Summary& s);

// The prompt of request i: prompt_tokens ids, the first shared_prefix equal for all i.
std::vector<int32_t> prompt_ids(const LoadOptions& o, int i);

// Runs the load; fills `results` (one per request, in request order) and returns the
// wall time of the whole run. Throws Error(BadInput) for bad options or URL.
double run_load(const LoadOptions& o, std::vector<RequestResult>& results);

// Splits a server-sent-event byte stream into the payloads of its `data:` lines, fed in
// pieces of any size; an event ends at a blank line.
class SseReader {
 public:
  // Calls on_data(payload) for each complete data line in the bytes seen so far.
  void feed(std::string_view bytes, const std::function<void(std::string_view)>& on_data);

 private:
  std::string pending_;
};

}  // namespace tandem::loadgen
