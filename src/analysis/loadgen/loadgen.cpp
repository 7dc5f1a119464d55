#include "tandem/analysis/loadgen.hpp"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "tandem/core/error.hpp"

namespace tandem::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

struct Target {
  std::string origin;  // scheme://host:port
  std::string path;    // the completions endpoint
};

Target parse_url(const std::string& url) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos || (url.compare(0, scheme, "http") != 0 && url.compare(0, scheme, "https") != 0))
    bad_input("--url '{}': expected http://HOST:PORT[/PREFIX]", url);
  const auto slash = url.find('/', scheme + 3);
  Target t;
  t.origin = url.substr(0, slash);
  if (t.origin.size() == scheme + 3) bad_input("--url '{}': no host", url);
  std::string prefix = slash == std::string::npos ? "" : url.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  const bool has_v1 = prefix.size() >= 3 && prefix.compare(prefix.size() - 3, 3, "/v1") == 0;
  t.path = prefix + (has_v1 ? "/completions" : "/v1/completions");
  return t;
}

void validate(const LoadOptions& o) {
  if (o.concurrency < 1 || o.concurrency > 4096) bad_input("--concurrency {} is out of range [1, 4096]", o.concurrency);
  if (o.requests < 1 || o.requests > 10'000'000) bad_input("--requests {} is out of range [1, 10000000]", o.requests);
  if (o.prompt_tokens < 1 || o.prompt_tokens > 10'000'000)
    bad_input("--prompt-tokens {} is out of range [1, 10000000]", o.prompt_tokens);
  if (o.max_tokens < 1 || o.max_tokens > 10'000'000) bad_input("--max-tokens {} is out of range [1, 10000000]", o.max_tokens);
  if (o.shared_prefix < 0 || o.shared_prefix > o.prompt_tokens)
    bad_input("--shared-prefix {} is out of range [0, --prompt-tokens {}]", o.shared_prefix, o.prompt_tokens);
  if (o.token_lo < 0 || o.token_hi <= o.token_lo) bad_input("token id range [{}, {}) is empty", o.token_lo, o.token_hi);
  if (!(o.timeout_s > 0)) bad_input("--timeout {} must be > 0", o.timeout_s);
}

std::string body_of(const LoadOptions& o, int i) {
  nlohmann::json b = {{"prompt", prompt_ids(o, i)},
                      {"max_tokens", o.max_tokens},
                      {"temperature", 0},
                      {"stream", true},
                      {"stream_options", {{"include_usage", true}}},
                      {"ignore_eos", true}};
  if (!o.model.empty()) b["model"] = o.model;
  return b.dump();
}

// The message of an OpenAI-style error body, else the body itself (shortened).
std::string error_message(const std::string& body) {
  const auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const auto& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"];
    if (e.is_string()) return e;
  }
  return body.substr(0, 200);
}

void one_request(const LoadOptions& o, const Target& t, int i, Clock::time_point t0, RequestResult& r) {
  auto now = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  httplib::Client cli(t.origin);
  cli.set_connection_timeout(std::chrono::seconds(10));
  const auto timeout = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::duration<double>(o.timeout_s));
  cli.set_read_timeout(timeout);
  cli.set_write_timeout(timeout);
  httplib::Request req;
  req.method = "POST";
  req.path = t.path;
  req.body = body_of(o, i);
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  if (!o.api_key.empty()) req.set_header("Authorization", "Bearer " + o.api_key);
  int status = 0;
  std::string raw;  // a non-200 body
  bool done = false;
  SseReader sse;
  int64_t pieces = 0;
  r.prompt_tokens = o.prompt_tokens;
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  auto on_data = [&](std::string_view payload) {
    if (payload == "[DONE]") {
      done = true;
      return;
    }
    const auto j = nlohmann::json::parse(payload, nullptr, false);
    if (!j.is_object()) return;
    if (j.contains("error")) {
      r.error = error_message(std::string(payload));
      return;
    }
    if (const auto c = j.find("choices"); c != j.end() && c->is_array() && !c->empty()) {
      const auto& ch = (*c)[0];
      const auto text = ch.find("text");
      if (text != ch.end() && text->is_string() && !text->get_ref<const std::string&>().empty()) {
        const double at = now();
        if (pieces++ == 0) r.first_token = at;
        r.token_times.push_back(at);
      }
    }
    if (const auto u = j.find("usage"); u != j.end() && u->is_object()) {
      r.output_tokens = u->value("completion_tokens", int64_t(0));
      r.prompt_tokens = u->value("prompt_tokens", r.prompt_tokens);
    }
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (status != 200) {
      raw.append(data, std::min(n, size_t(4096)));
      return true;
    }
    sse.feed(std::string_view(data, n), on_data);
    return true;
  };
  r.start = now();
  const httplib::Result res = cli.send(req);
  r.end = now();
  if (!res) {
    r.error = "request failed: " + httplib::to_string(res.error()) + " (" + t.origin + t.path + ")";
    return;
  }
  if (status != 200) {
    r.error = "HTTP " + std::to_string(status) + ": " + error_message(raw);
    return;
  }
  if (!r.error.empty()) return;
  if (pieces == 0) {
    r.error = "the stream held no token";
    return;
  }
  if (r.output_tokens == 0) r.output_tokens = pieces;
  r.ok = true;
  (void)done;
}

}  // namespace

std::vector<int32_t> prompt_ids(const LoadOptions& o, int i) {
  std::vector<int32_t> ids(size_t(o.prompt_tokens));
  std::mt19937_64 shared(o.seed), own(o.seed * 0x9E3779B97F4A7C15ull + uint64_t(i) + 1);
  std::uniform_int_distribution<int32_t> pick(o.token_lo, o.token_hi - 1);
  for (int t = 0; t < o.prompt_tokens; ++t) ids[size_t(t)] = pick(t < o.shared_prefix ? shared : own);
  return ids;
}

double run_load(const LoadOptions& o, std::vector<RequestResult>& results) {
  validate(o);
  const Target t = parse_url(o.url);
  results.assign(size_t(o.requests), RequestResult{});
  std::atomic<int> next{0};
  int done = 0;
  std::mutex progress_mu;
  const auto t0 = Clock::now();
  auto worker = [&] {
    for (int i; (i = next.fetch_add(1)) < o.requests;) {
      one_request(o, t, i, t0, results[size_t(i)]);
      std::lock_guard lock(progress_mu);
      ++done;
      if (o.progress) o.progress(done, o.requests);
    }
  };
  std::vector<std::thread> threads;
  for (int c = 0; c < std::min(o.concurrency, o.requests); ++c) threads.emplace_back(worker);
  for (auto& th : threads) th.join();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void SseReader::feed(std::string_view bytes, const std::function<void(std::string_view)>& on_data) {
  pending_.append(bytes);
  size_t from = 0;
  for (size_t nl; (nl = pending_.find('\n', from)) != std::string::npos; from = nl + 1) {
    std::string_view line(pending_.data() + from, nl - from);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.substr(0, 5) == "data:") {
      line.remove_prefix(5);
      if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
      on_data(line);
    }
  }
  pending_.erase(0, from);
}

}  // namespace tandem::loadgen
