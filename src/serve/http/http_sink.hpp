#pragma once
// A SequenceSink that turns tokens into text for an HTTP response: each token's piece
// goes through the stop-string matcher (which also holds incomplete UTF-8), and what it
// releases is queued for the connection's thread to take. The engine thread writes;
// the connection thread waits and reads.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tandem/serve/response.hpp"
#include "tandem/serve/scheduler.hpp"
#include "tandem/serve/stop_matcher.hpp"

namespace tandem {
class Tokenizer;
}

namespace tandem::serve {

class Metrics;

class HttpSink : public SequenceSink {
 public:
  HttpSink(const Tokenizer& tok, std::vector<std::string> stops, int top_logprobs, Metrics& m);

  bool on_token(const TokenEvent& t) override;
  bool stopped_by_text() const override { return stopped_; }
  void on_finish(Finish why, const SequenceStats& st, const std::string& error) override;

  // Connection side. Moves the text released so far (and its tokens' logprobs) into
  // text/lp; waits up to `wait` when there is none. Returns true once the sequence has
  // finished and everything was taken.
  bool take(std::string& text, std::vector<TokenLogprob>& lp, std::chrono::milliseconds wait);
  // The client left: the next token ends the sequence.
  void abandon() { abandoned_ = true; }
  Finish finish() const;
  SequenceStats stats() const;
  std::string error() const;

 private:
  const Tokenizer& tok_;
  StopMatcher matcher_;
  int top_logprobs_;
  Metrics& metrics_;
  std::atomic<bool> abandoned_{false};
  bool stopped_ = false;  // engine thread only
  std::chrono::steady_clock::time_point last_token_{};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
  std::vector<TokenLogprob> lp_;
  bool finished_ = false;
  Finish finish_ = Finish::Stop;
  SequenceStats stats_;
  std::string error_;
};

}  // namespace tandem::serve
