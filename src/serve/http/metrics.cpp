#include "metrics.hpp"

#include <fmt/format.h>

#include "tandem/serve/scheduler.hpp"
#include "tandem/serve/sp_lane.hpp"

namespace tandem::serve {

void Histogram::observe(double s) {
  std::lock_guard lock(mu_);
  size_t b = 0;
  while (b < kBounds.size() && s > kBounds[b]) ++b;
  ++counts_[b];
  sum_ += s;
  ++n_;
}

std::string Histogram::text(const std::string& name, const std::string& help) const {
  std::lock_guard lock(mu_);
  std::string out = fmt::format("# HELP {0} {1}\n# TYPE {0} histogram\n", name, help);
  int64_t cum = 0;
  for (size_t b = 0; b < kBounds.size(); ++b) {
    cum += counts_[b];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, kBounds[b], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, n_, name, sum_, name, n_);
  return out;
}

void Metrics::request(const std::string& endpoint, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{endpoint, status}];
}

std::string Metrics::text(const SchedulerStats& s, const std::optional<SpLaneStats>& sp) const {
  std::string out = "# HELP tandem_requests_total HTTP requests answered, by endpoint and status.\n"
                    "# TYPE tandem_requests_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [k, n] : requests_)
      out += fmt::format("tandem_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, n);
  }
  auto one = [&](const char* name, const char* type, const char* help, int64_t v) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, v);
  };
  one("tandem_prompt_tokens_total", "counter", "Prompt tokens admitted.", s.prompt_tokens);
  one("tandem_prompt_tokens_cached_total", "counter", "Prompt tokens taken from the prefix cache.",
      s.cached_prompt_tokens);
  one("tandem_generation_tokens_total", "counter", "Tokens generated.", s.output_tokens);
  one("tandem_prefix_cache_hits_total", "counter", "Requests that reused cached KV pages.", s.prefix_hits);
  one("tandem_preemptions_total", "counter", "Sequences preempted for want of KV pages.", s.preemptions);
  one("tandem_steps_total", "counter", "Batched forward steps run.", s.steps);
  one("tandem_queue_length", "gauge", "Requests waiting for admission.", s.queued);
  one("tandem_sequences_active", "gauge", "Sequences prefilling or decoding.", s.active);
  one("tandem_kv_pages_total", "gauge", "KV pages in the pool.", s.kv_pages_total);
  one("tandem_kv_pages_used", "gauge", "KV pages in use (sequences and prefix cache).", s.kv_pages_used);
  one("tandem_kv_pages_cached", "gauge", "KV pages held only by the prefix cache.", s.kv_pages_cached);
  one("tandem_batch_sequences", "gauge", "Sequences in the last step.", s.last_batch_sequences);
  one("tandem_batch_tokens", "gauge", "Tokens in the last step.", s.last_batch_tokens);
  if (sp) {
    one("tandem_sp_queue_length", "gauge", "Long prompts waiting for the sequence-parallel ranks.", sp->queued);
    one("tandem_sp_sequences_active", "gauge", "Sequences running across the ranks (0 or 1).", sp->active);
    one("tandem_sp_sequences_total", "counter", "Sequences run across the ranks.", sp->requests);
    one("tandem_sp_prompt_tokens_total", "counter", "Prompt tokens prefilled across the ranks.", sp->prompt_tokens);
    one("tandem_sp_generation_tokens_total", "counter", "Tokens generated across the ranks.", sp->output_tokens);
    out += fmt::format("# HELP tandem_sp_last_prefill_seconds The last long prompt's prefill across the ranks.\n"
                       "# TYPE tandem_sp_last_prefill_seconds gauge\ntandem_sp_last_prefill_seconds {}\n",
                       sp->last_prefill_s);
  }
  out += ttft.text("tandem_time_to_first_token_seconds", "From request to its first token.");
  out += token_latency.text("tandem_time_per_output_token_seconds", "Between a sequence's tokens.");
  return out;
}

}  // namespace tandem::serve
