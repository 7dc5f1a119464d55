// The incremental stop matcher: stops across pieces, held prefixes, UTF-8 holding.
#include <gtest/gtest.h>
#include <tandem/serve/stop_matcher.hpp>

#include <random>

namespace tandem::serve {
namespace {

// Feeds all pieces; returns everything released (plus the flush when no stop matched).
std::string run(StopMatcher& m, const std::vector<std::string>& pieces,
                std::vector<std::string>* releases = nullptr) {
  std::string out;
  for (const auto& p : pieces) {
    std::string r = m.feed(p);
    if (releases) releases->push_back(r);
    out += r;
  }
  return out + m.flush();
}

TEST(StopMatcher, NoStopsPassesTextThrough) {
  StopMatcher m;
  std::vector<std::string> rel;
  EXPECT_EQ(run(m, {"Hello", ", ", "world"}, &rel), "Hello, world");
  EXPECT_EQ(rel, (std::vector<std::string>{"Hello", ", ", "world"}));
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, StopInsideOnePiece) {
  StopMatcher m({"###"});
  EXPECT_EQ(m.feed("abc###def"), "abc");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "###");
  EXPECT_EQ(m.feed("more"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, StopSplitAcrossPiecesIsHeldThenDropped) {
  StopMatcher m({"</end>"});
  EXPECT_EQ(m.feed("text</"), "text");  // "</" may begin the stop: held
  EXPECT_EQ(m.feed("en"), "");
  EXPECT_EQ(m.feed("d> tail"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, HeldPrefixIsReleasedWhenItDiverges) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.feed("a ST"), "a ");
  EXPECT_EQ(m.feed("OX"), "STOX");
  EXPECT_EQ(m.feed("ST"), "");
  EXPECT_EQ(m.flush(), "ST");  // the end of generation releases what was held
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"world", "lo, w"});
  EXPECT_EQ(m.feed("Hello, world"), "Hel");
  EXPECT_EQ(m.matched(), "lo, w");
}

TEST(StopMatcher, OverlappingPrefixIsFoundAfterFalseStart) {
  StopMatcher m({"aab"});
  EXPECT_EQ(m.feed("xa"), "x");
  EXPECT_EQ(m.feed("a"), "");
  EXPECT_EQ(m.feed("ab"), "a");  // "aaab": the stop starts at the second a
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, HoldsIncompleteUtf8) {
  // "é" is C3 A9; "€" is E2 82 AC; "😀" is F0 9F 98 80.
  StopMatcher m;
  EXPECT_EQ(m.feed("caf\xC3"), "caf");
  EXPECT_EQ(m.feed("\xA9!"), "\xC3\xA9!");
  EXPECT_EQ(m.feed("\xE2\x82"), "");
  EXPECT_EQ(m.feed("\xAC\xF0\x9F"), "\xE2\x82\xAC");
  EXPECT_EQ(m.feed("\x98"), "");
  EXPECT_EQ(m.feed("\x80"), "\xF0\x9F\x98\x80");
}

TEST(StopMatcher, Utf8CompletePrefix) {
  EXPECT_EQ(utf8_complete_prefix("ab"), 2u);
  EXPECT_EQ(utf8_complete_prefix("a\xC3"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xE2\x82"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xE2\x82\xAC"), 4u);
  EXPECT_EQ(utf8_complete_prefix("a\xF0\x9F\x98"), 1u);
  EXPECT_EQ(utf8_complete_prefix("\x80\x80"), 2u);  // stray continuation bytes never complete
  EXPECT_EQ(utf8_complete_prefix("a\x80"), 2u);
  EXPECT_EQ(utf8_complete_prefix(""), 0u);
}

// Any split of a text into pieces gives the same output as the whole text at once, and no
// release ends inside a UTF-8 character.
TEST(StopMatcher, SplitsDoNotChangeTheResult) {
  const std::string text = "na\xC3\xAFve caf\xC3\xA9 \xE2\x82\xAC 5 <|end|> after";
  const std::vector<std::string> stops = {"<|end|>", "\xE2\x82\xAC 6", "nope"};
  std::mt19937 rng(7);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size();) {
      size_t len = 1 + rng() % 4;
      pieces.push_back(text.substr(i, len));
      i += len;
    }
    StopMatcher m(stops);
    std::vector<std::string> rel;
    std::string out = run(m, pieces, &rel);
    EXPECT_EQ(out, "na\xC3\xAFve caf\xC3\xA9 \xE2\x82\xAC 5 ");
    EXPECT_TRUE(m.stopped());
    EXPECT_EQ(m.matched(), "<|end|>");
    for (const auto& r : rel) EXPECT_EQ(utf8_complete_prefix(r), r.size());
  }
}

}  // namespace
}  // namespace tandem::serve
