#include "http_sink.hpp"

#include "metrics.hpp"
#include "tandem/model/tokenizer.hpp"

namespace tandem::serve {

HttpSink::HttpSink(const Tokenizer& tok, std::vector<std::string> stops, int top_logprobs, Metrics& m)
    : tok_(tok), matcher_(std::move(stops)), top_logprobs_(top_logprobs), metrics_(m) {}

bool HttpSink::on_token(const TokenEvent& t) {
  const auto now = std::chrono::steady_clock::now();
  if (last_token_.time_since_epoch().count() != 0)
    metrics_.token_latency.observe(std::chrono::duration<double>(now - last_token_).count());
  last_token_ = now;
  const std::string piece = tok_.piece(t.token);
  const std::string out = matcher_.feed(piece);
  stopped_ = matcher_.stopped();
  {
    std::lock_guard lock(mu_);
    text_ += out;
    if (top_logprobs_ >= 0 && !stopped_) {
      TokenLogprob lp{piece, t.logprob, {}};
      for (const auto& [id, p] : t.top) lp.top.emplace_back(tok_.piece(id), p);
      lp_.push_back(std::move(lp));
    }
  }
  cv_.notify_all();
  return !stopped_ && !abandoned_;
}

void HttpSink::on_finish(Finish why, const SequenceStats& st, const std::string& error) {
  if (st.output_tokens > 0) metrics_.ttft.observe(st.first_token_s);
  {
    std::lock_guard lock(mu_);
    if (!stopped_) text_ += matcher_.flush();
    finished_ = true;
    finish_ = why;
    stats_ = st;
    error_ = error;
  }
  cv_.notify_all();
}

bool HttpSink::take(std::string& text, std::vector<TokenLogprob>& lp, std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  if (text_.empty() && lp_.empty() && !finished_) cv_.wait_for(lock, wait);
  text += text_;
  text_.clear();
  for (auto& x : lp_) lp.push_back(std::move(x));
  lp_.clear();
  return finished_;
}

Finish HttpSink::finish() const {
  std::lock_guard lock(mu_);
  return finish_;
}
SequenceStats HttpSink::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}
std::string HttpSink::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

}  // namespace tandem::serve
