#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "tandem/runtime/generate.hpp"
#include "tandem/runtime/sampler.hpp"

using namespace tandem;

TEST(Sampler, GreedyIsArgmaxWithLowestIndexOnTies) {
  Sampler s({0.0f, 40, 0.95f, 1});
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.sample(l), 1);
  EXPECT_EQ(argmax(l), 1);
}

TEST(Sampler, TopKOneIsArgmax) {
  Sampler s({1.5f, 1, 1.0f, 9});
  std::vector<float> l = {0.1f, 0.3f, 5.0f, 0.2f};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.sample(l), 2);
}

TEST(Sampler, SameSeedSameSequence) {
  std::vector<float> l = {0.1f, 0.3f, 0.5f, 0.2f, 0.0f, 0.4f};
  Sampler a({1.0f, 0, 1.0f, 42}), b({1.0f, 0, 1.0f, 42});
  for (int i = 0; i < 200; ++i) EXPECT_EQ(a.sample(l), b.sample(l));
}

TEST(Sampler, FrequenciesFollowSoftmaxWithTemperature) {
  std::vector<float> l = {1.0f, 2.0f, 0.0f};
  const float T = 0.7f;
  Sampler s({T, 0, 1.0f, 123});
  std::map<int, int> count;
  const int n = 40000;
  for (int i = 0; i < n; ++i) count[s.sample(l)]++;
  double z = 0;
  for (float x : l) z += std::exp(x / T);
  for (int i = 0; i < 3; ++i) {
    const double p = std::exp(l[size_t(i)] / T) / z;
    EXPECT_NEAR(double(count[i]) / n, p, 0.01) << i;
  }
}

TEST(Sampler, TopPKeepsSmallestNucleus) {
  // probabilities ~ 0.665, 0.245, 0.090: top_p 0.6 keeps only the first.
  std::vector<float> l = {2.0f, 1.0f, 0.0f};
  Sampler s({1.0f, 0, 0.6f, 5});
  for (int i = 0; i < 200; ++i) EXPECT_EQ(s.sample(l), 0);
  // top_p 0.8 keeps two: token 2 never appears, token 1 does.
  Sampler s2({1.0f, 0, 0.8f, 5});
  std::map<int, int> count;
  for (int i = 0; i < 2000; ++i) count[s2.sample(l)]++;
  EXPECT_EQ(count[2], 0);
  EXPECT_GT(count[1], 0);
}

TEST(Utf8Stream, HoldsBackIncompleteCharacters) {
  Utf8Stream s;
  // "é" = C3 A9, "€" = E2 82 AC
  EXPECT_EQ(s.push("a\xC3"), "a");
  EXPECT_EQ(s.push("\xA9\xE2\x82"), "\xC3\xA9");
  EXPECT_EQ(s.push("\xAC!"), "\xE2\x82\xAC!");
  EXPECT_EQ(s.push("\xE2"), "");
  EXPECT_EQ(s.flush(), "\xE2");
}
