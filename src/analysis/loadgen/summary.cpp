#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tandem/analysis/loadgen.hpp"

namespace tandem::loadgen {

Percentiles percentiles(std::vector<double> v) {
  Percentiles p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    const double r = q * double(v.size() - 1);
    const size_t lo = size_t(std::floor(r)), hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (r - double(lo));
  };
  double sum = 0;
  for (double x : v) sum += x;
  p.mean = sum / double(v.size());
  p.median = at(0.5);
  p.p99 = at(0.99);
  p.max = v.back();
  return p;
}

Summary summarize(const std::vector<RequestResult>& results, const LoadOptions& o, double duration_s) {
  Summary s;
  s.requests = int(results.size());
  s.concurrency = o.concurrency;
  s.prompt_tokens = o.prompt_tokens;
  s.max_tokens = o.max_tokens;
  s.shared_prefix = o.shared_prefix;
  s.duration_s = duration_s;
  std::vector<double> ttft, itl, e2e;
  for (const RequestResult& r : results) {
    s.ttft_each_ms.push_back(r.ok ? 1e3 * (r.first_token - r.start) : -1.0);
    if (!r.ok) {
      ++s.failed;
      if (s.errors.size() < 5 && std::find(s.errors.begin(), s.errors.end(), r.error) == s.errors.end())
        s.errors.push_back(r.error);
      continue;
    }
    ++s.ok;
    s.output_tokens += r.output_tokens;
    s.input_tokens += r.prompt_tokens;
    ttft.push_back(1e3 * (r.first_token - r.start));
    e2e.push_back(1e3 * (r.end - r.start));
    for (size_t k = 1; k < r.token_times.size(); ++k) itl.push_back(1e3 * (r.token_times[k] - r.token_times[k - 1]));
  }
  if (duration_s > 0) {
    s.requests_per_s = s.ok / duration_s;
    s.output_tokens_per_s = double(s.output_tokens) / duration_s;
    s.total_tokens_per_s = double(s.output_tokens + s.input_tokens) / duration_s;
  }
  s.ttft_ms = percentiles(ttft);
  s.itl_ms = percentiles(itl);
  s.e2e_ms = percentiles(e2e);
  return s;
}

namespace {
nlohmann::json to_json(const Percentiles& p) {
  return {{"mean", p.mean}, {"median", p.median}, {"p99", p.p99}, {"max", p.max}};
}
std::string line(const char* what, const Percentiles& p) {
  return fmt::format("{:<22} median {:9.2f} ms   p99 {:9.2f} ms   mean {:9.2f} ms   max {:9.2f} ms\n", what,
                     p.median, p.p99, p.mean, p.max);
}
}  // namespace

nlohmann::json to_json(const Summary& s) {
  return {{"requests", s.requests},
          {"ok", s.ok},
          {"failed", s.failed},
          {"concurrency", s.concurrency},
          {"prompt_tokens", s.prompt_tokens},
          {"max_tokens", s.max_tokens},
          {"shared_prefix", s.shared_prefix},
          {"duration_s", s.duration_s},
          {"requests_per_s", s.requests_per_s},
          {"output_tokens_per_s", s.output_tokens_per_s},
          {"total_tokens_per_s", s.total_tokens_per_s},
          {"output_tokens", s.output_tokens},
          {"input_tokens", s.input_tokens},
          {"ttft_ms", to_json(s.ttft_ms)},
          {"itl_ms", to_json(s.itl_ms)},
          {"e2e_ms", to_json(s.e2e_ms)},
          {"errors", s.errors},
          {"ttft_each_ms", s.ttft_each_ms}};
}

std::string format_summary(const Summary& s) {
  std::string out = fmt::format(
      "{} requests ({} ok, {} failed) at concurrency {}; prompts of {} tokens ({} shared), up to {} output tokens\n"
      "duration {:.2f} s   requests/s {:.3f}   output tokens/s {:.1f}   total tokens/s {:.1f}\n",
      s.requests, s.ok, s.failed, s.concurrency, s.prompt_tokens, s.shared_prefix, s.max_tokens, s.duration_s,
      s.requests_per_s, s.output_tokens_per_s, s.total_tokens_per_s);
  out += line("time to first token", s.ttft_ms);
  out += line("inter-token latency", s.itl_ms);
  out += line("request latency", s.e2e_ms);
  for (const auto& e : s.errors) out += "error: " + e + "\n";
  return out;
}

}  // namespace tandem::loadgen
