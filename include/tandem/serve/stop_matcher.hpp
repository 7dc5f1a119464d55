#pragma once
// Incremental stop strings for a text stream. Fed decoded pieces, it releases the text that
// can no longer be part of a stop string, never ending a release inside a UTF-8 character
// (incomplete trailing bytes are held for the next piece). On a match it releases the text
// before the stop, never the stop itself, and takes nothing more.
#include <string>
#include <string_view>
#include <vector>

namespace tandem::serve {

class StopMatcher {
 public:
  // Empty stop strings are ignored; with none, only the UTF-8 holding applies.
  explicit StopMatcher(std::vector<std::string> stops = {});

  // Adds `piece`; returns the text now safe to emit (possibly empty).
  std::string feed(std::string_view piece);
  // The end of generation: returns everything still held (incomplete UTF-8 included);
  // empty after a stop.
  std::string flush();

  bool stopped() const { return stopped_; }
  // The stop string that matched ("" before a match).
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  std::string matched_;
  bool stopped_ = false;
};

// The length of the longest prefix of `s` that does not end inside a UTF-8 character: a
// trailing lead byte whose continuation bytes have not all arrived is cut off. Bytes that
// are not valid UTF-8 at all are kept (they can never complete).
size_t utf8_complete_prefix(std::string_view s);

}  // namespace tandem::serve
