// Static activation plan: exact offsets of hand-checked cases, in-place rules, no
// overlap of live buffers over many random specs, and a poisoned execution that proves
// no live buffer is ever aliased.
#include "tandem/memory/activation_plan.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tandem/core/error.hpp"

using namespace tandem;

namespace {

BufferSpec buf(size_t bytes, int32_t first, int32_t last, int32_t in_place_of = -1) {
  return BufferSpec{bytes, first, last, in_place_of};
}

size_t aligned(size_t x, size_t a) { return (x + a - 1) / a * a; }

bool live_together(const BufferSpec& a, const BufferSpec& b) {
  return a.first_use <= b.last_use && b.first_use <= a.last_use;
}

// Independent statement of the in-place rule: the hint of y is legal when x dies at y's
// birth step, was born before it, y fits in x, and no lower-index buffer claimed x legally.
std::vector<int32_t> legal_in_place(const std::vector<BufferSpec>& s, size_t a) {
  std::vector<int32_t> out(s.size(), -1);
  std::vector<bool> taken(s.size(), false);
  for (size_t y = 0; y < s.size(); ++y) {
    const int32_t x = s[y].in_place_of;
    if (x < 0 || aligned(s[y].bytes, a) == 0) continue;
    const BufferSpec& in = s[size_t(x)];
    if (in.last_use == s[y].first_use && in.first_use < s[y].first_use &&
        aligned(s[y].bytes, a) <= aligned(in.bytes, a) && !taken[size_t(x)]) {
      taken[size_t(x)] = true;
      out[y] = x;
    }
  }
  return out;
}

// Every structural property of a plan; returns "" or the first violation.
std::string check_plan(const std::vector<BufferSpec>& s, const ActivationPlan& p) {
  const size_t a = p.alignment;
  size_t sum = 0;
  if (p.offsets.size() != s.size()) return "offsets size";
  for (size_t i = 0; i < s.size(); ++i) {
    sum += aligned(s[i].bytes, a);
    if (p.offsets[i] % a != 0) return "unaligned offset " + std::to_string(i);
    if (p.offsets[i] + aligned(s[i].bytes, a) > p.arena_bytes) return "past the arena";
  }
  if (sum != p.unplanned_bytes) return "unplanned sum";
  if (p.arena_bytes > p.unplanned_bytes) return "peak above the unplanned sum";
  if (p.live_bytes_max > p.arena_bytes) return "peak below the live lower bound";
  if (p.in_place_of != legal_in_place(s, a)) return "in-place hints differ from the rule";
  for (size_t i = 0; i < s.size(); ++i)
    for (size_t j = i + 1; j < s.size(); ++j) {
      if (!live_together(s[i], s[j]) || s[i].bytes == 0 || s[j].bytes == 0) continue;
      if (p.in_place_of[j] == int32_t(i) || p.in_place_of[i] == int32_t(j)) continue;
      const size_t ai = p.offsets[i], bi = ai + aligned(s[i].bytes, a);
      const size_t aj = p.offsets[j], bj = aj + aligned(s[j].bytes, a);
      if (ai < bj && aj < bi)
        return "buffers " + std::to_string(i) + " and " + std::to_string(j) +
               " are live together and share bytes";
    }
  return "";
}

std::vector<BufferSpec> random_specs(std::mt19937& rng) {
  const int n = std::uniform_int_distribution<int>(1, 60)(rng);
  const int steps = std::uniform_int_distribution<int>(1, 25)(rng);
  std::vector<BufferSpec> s;
  for (int i = 0; i < n; ++i) {
    BufferSpec b;
    const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
    b.bytes = kind == 0 ? 0 : std::uniform_int_distribution<size_t>(1, kind < 5 ? 300 : 5000)(rng);
    b.first_use = std::uniform_int_distribution<int32_t>(0, steps)(rng);
    b.last_use = b.first_use + std::uniform_int_distribution<int32_t>(0, 6)(rng);
    if (i > 0 && std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
      b.in_place_of = std::uniform_int_distribution<int32_t>(0, i - 1)(rng);
      // Often make the hint legal: born when the input dies, no larger than it.
      const BufferSpec& in = s[size_t(b.in_place_of)];
      if (std::uniform_int_distribution<int>(0, 1)(rng) == 0 && in.last_use > in.first_use) {
        b.first_use = in.last_use;
        b.last_use = b.first_use + std::uniform_int_distribution<int32_t>(0, 4)(rng);
        b.bytes = std::uniform_int_distribution<size_t>(0, in.bytes)(rng);
      }
    }
    s.push_back(b);
  }
  return s;
}

uint8_t pattern(size_t buffer, uint32_t version, size_t byte) {
  uint64_t h = (uint64_t(buffer) + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t(version) << 32) ^ byte;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return uint8_t(h);
}

// Runs the plan: at each step, reads (checks) the inputs, writes every output and
// rewrites every buffer that stays live with a new pattern, checks every live buffer,
// and fills the ranges of buffers that die with 0xDEADBEEF. Returns "" or the first
// buffer found clobbered.
std::string simulate(const std::vector<BufferSpec>& s, const ActivationPlan& p) {
  ActivationArena arena(p);
  const uint32_t dead = 0xDEADBEEF;
  for (size_t i = 0; i < arena.bytes(); i += 4)
    std::memcpy(arena.data() + i, &dead, std::min<size_t>(4, arena.bytes() - i));
  std::vector<uint32_t> version(s.size(), 0);
  std::vector<bool> consumed(s.size(), false);
  auto write = [&](size_t i) {
    for (size_t k = 0; k < s[i].bytes; ++k) arena.buffer(p, i)[k] = std::byte{pattern(i, version[i], k)};
  };
  auto intact = [&](size_t i) {
    for (size_t k = 0; k < s[i].bytes; ++k)
      if (arena.buffer(p, i)[k] != std::byte{pattern(i, version[i], k)}) return false;
    return true;
  };
  auto poison = [&](size_t i) {
    const size_t n = aligned(s[i].bytes, p.alignment);
    for (size_t k = 0; k < n; k += 4) std::memcpy(arena.buffer(p, i) + k, &dead, 4);
  };
  int32_t lo = 0, hi = 0;
  for (const BufferSpec& b : s) lo = std::min(lo, b.first_use), hi = std::max(hi, b.last_use);
  for (int32_t step = lo; step <= hi; ++step) {
    for (size_t i = 0; i < s.size(); ++i)  // inputs
      if (s[i].first_use < step && step <= s[i].last_use && !intact(i))
        return "input " + std::to_string(i) + " clobbered before step " + std::to_string(step);
    for (size_t i = 0; i < s.size(); ++i)  // inputs an output overwrites in place
      if (p.in_place_of[i] >= 0 && s[i].first_use == step) {
        consumed[size_t(p.in_place_of[i])] = true;
        poison(size_t(p.in_place_of[i]));
      }
    for (size_t i = 0; i < s.size(); ++i) {  // outputs, and new patterns in live buffers
      if (consumed[i] || step < s[i].first_use || step > s[i].last_use) continue;
      if (s[i].first_use < step) ++version[i];
      write(i);
    }
    for (size_t i = 0; i < s.size(); ++i)
      if (!consumed[i] && s[i].first_use <= step && step <= s[i].last_use && !intact(i))
        return "buffer " + std::to_string(i) + " clobbered at step " + std::to_string(step);
    for (size_t i = 0; i < s.size(); ++i)
      if (!consumed[i] && s[i].last_use == step) poison(i);
  }
  return "";
}

}  // namespace

TEST(ActivationPlan, HandCheckedOffsets) {
  // step 0: A, B, C placed by size: A 0, B 256, C 384 (arena 448)
  // step 1: D takes C in place (C dies at 1); E at the end: 448 (arena 640)
  // step 2: A is free ([0,256)); F's hint (A) is refused: A died at step 1. F 0, G 64.
  // step 3: B, E free: holes [192,384) and [448,...). H's hint (D) is refused: too
  //         large; H goes to the end 448 (arena 704); I fits the hole: 192.
  const std::vector<BufferSpec> s = {
      buf(256, 0, 1),      buf(100, 0, 2),    buf(64, 0, 1),     buf(64, 1, 3, 2),
      buf(150, 1, 2),      buf(64, 2, 3, 0),  buf(128, 2, 3),    buf(256, 3, 3, 3),
      buf(128, 3, 4),
  };
  const ActivationPlan p = plan_activations(s);
  EXPECT_EQ(p.offsets, (std::vector<size_t>{0, 256, 384, 384, 448, 0, 64, 448, 192}));
  EXPECT_EQ(p.in_place_of, (std::vector<int32_t>{-1, -1, -1, 2, -1, -1, -1, -1, -1}));
  EXPECT_EQ(p.arena_bytes, 704u);
  EXPECT_EQ(p.unplanned_bytes, 256u + 128 + 64 + 64 + 192 + 64 + 128 + 256 + 128);
  // Live at once, at most: step 1 (A 256, B 128, C 64 holding D, E 192) and step 3
  // (D 64, F 64, G 128, H 256, I 128), 640 bytes; the plan loses 64 to fragmentation.
  EXPECT_EQ(p.live_bytes_max, 640u);
  EXPECT_EQ(check_plan(s, p), "");
  EXPECT_EQ(simulate(s, p), "");
}

TEST(ActivationPlan, BestFitPicksTheSmallestHole) {
  // After step 0, holes of 128 bytes at 0 and 64 bytes at 192: a 64-byte buffer takes
  // the smaller hole, not the first.
  const std::vector<BufferSpec> s = {buf(128, 0, 0), buf(64, 0, 5), buf(64, 0, 0), buf(64, 0, 5),
                                     buf(64, 1, 1)};
  const ActivationPlan p = plan_activations(s);
  EXPECT_EQ(p.offsets, (std::vector<size_t>{0, 128, 192, 256, 192}));
  EXPECT_EQ(p.arena_bytes, 320u);
}

TEST(ActivationPlan, InPlaceHintsHonoredOnlyWhenLegal) {
  // Legal: x dies at y's birth, y fits.
  auto p = plan_activations(std::vector<BufferSpec>{buf(1000, 0, 1), buf(1000, 1, 2, 0)});
  EXPECT_EQ(p.in_place_of[1], 0);
  EXPECT_EQ(p.offsets[1], p.offsets[0]);
  EXPECT_EQ(p.arena_bytes, 1024u);
  // Refused: the input is still read after the output is born.
  p = plan_activations(std::vector<BufferSpec>{buf(1000, 0, 2), buf(1000, 1, 2, 0)});
  EXPECT_EQ(p.in_place_of[1], -1);
  EXPECT_EQ(p.arena_bytes, 2048u);
  // Refused: the output is larger than the input.
  p = plan_activations(std::vector<BufferSpec>{buf(1000, 0, 1), buf(1100, 1, 2, 0)});
  EXPECT_EQ(p.in_place_of[1], -1);
  // Refused: the input is born at the same step.
  p = plan_activations(std::vector<BufferSpec>{buf(64, 1, 1), buf(64, 1, 2, 0)});
  EXPECT_EQ(p.in_place_of[1], -1);
  // Two claimants of one input: the first (in index order) that fits wins.
  p = plan_activations(std::vector<BufferSpec>{buf(256, 0, 1), buf(512, 1, 2, 0),
                                               buf(128, 1, 2, 0), buf(64, 1, 2, 0)});
  EXPECT_EQ(p.in_place_of, (std::vector<int32_t>{-1, -1, 0, -1}));
  // Smaller output: the rest of the input's range is freed when the input dies.
  p = plan_activations(std::vector<BufferSpec>{buf(256, 0, 1), buf(64, 1, 3, 0), buf(192, 2, 3)});
  EXPECT_EQ(p.offsets, (std::vector<size_t>{0, 0, 64}));
  EXPECT_EQ(p.arena_bytes, 256u);
  // A chain of in-place ops stays in one range.
  p = plan_activations(std::vector<BufferSpec>{buf(512, 0, 1), buf(512, 1, 2, 0),
                                               buf(512, 2, 3, 1), buf(512, 3, 4, 2)});
  EXPECT_EQ(p.offsets, (std::vector<size_t>{0, 0, 0, 0}));
  EXPECT_EQ(p.arena_bytes, 512u);
}

TEST(ActivationPlan, RandomSpecsNeverAliasLiveBuffers) {
  std::mt19937 rng(1234);
  size_t honored = 0, planned = 0, unplanned = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const auto s = random_specs(rng);
    const size_t align = iter % 3 == 0 ? 16 : 64;
    const ActivationPlan p = plan_activations(s, align);
    ASSERT_EQ(check_plan(s, p), "") << "iteration " << iter;
    for (int32_t x : p.in_place_of) honored += x >= 0;
    planned += p.arena_bytes;
    unplanned += p.unplanned_bytes;
  }
  EXPECT_GT(honored, 1000u);
  EXPECT_LT(planned, unplanned);
}

TEST(ActivationPlan, PoisonedExecutionFindsNoAliasing) {
  std::mt19937 rng(99);
  for (int iter = 0; iter < 500; ++iter) {
    const auto s = random_specs(rng);
    const ActivationPlan p = plan_activations(s);
    ASSERT_EQ(simulate(s, p), "") << "iteration " << iter;
  }
}

TEST(ActivationPlan, PoisonedExecutionCatchesABrokenPlan) {
  // The check itself works: move a buffer onto one that is live at the same time.
  const std::vector<BufferSpec> s = {buf(256, 0, 2), buf(256, 1, 3), buf(64, 2, 3)};
  ActivationPlan p = plan_activations(s);
  ASSERT_EQ(simulate(s, p), "");
  p.offsets[1] = p.offsets[0];
  EXPECT_NE(simulate(s, p), "");
  EXPECT_NE(check_plan(s, p), "");
  // A buffer born at the step another one is last read cannot take its bytes (no hint).
  p = plan_activations(s);
  p.offsets[2] = p.offsets[0];  // 2 is born at step 2, the step 0 is last read at
  EXPECT_NE(simulate(s, p), "");
}

TEST(ActivationPlan, DecoderLayersReuseOneLayersMemory) {
  // A Llama-like decoder: per layer x -> norm -> q,k,v -> attn -> o -> x + o (in place of
  // o) -> norm -> gate, up -> swiglu (in place of gate) -> down -> x + down (in place).
  auto layers = [](int n_layer) {
    const size_t D = 4096 * 4, F = 11008 * 4;
    std::vector<BufferSpec> s = {buf(D, 0, 1)};  // embeddings = x of layer 0
    int32_t t = 1, x = 0;
    for (int l = 0; l < n_layer; ++l) {
      const int32_t base = int32_t(s.size());
      s.push_back(buf(D, t, t + 1));              // norm
      s.push_back(buf(D, t + 1, t + 2));          // q
      s.push_back(buf(D, t + 1, t + 2));          // k
      s.push_back(buf(D, t + 1, t + 2));          // v
      s.push_back(buf(D, t + 2, t + 3));          // attn
      s.push_back(buf(D, t + 3, t + 4));          // o
      s[size_t(x)].last_use = t + 4;              // x is read by the residual add
      s.push_back(buf(D, t + 4, t + 6, base + 5));  // x + o
      s.push_back(buf(D, t + 5, t + 6));          // norm
      s.push_back(buf(F, t + 6, t + 7));          // gate
      s.push_back(buf(F, t + 6, t + 7));          // up
      s.push_back(buf(F, t + 7, t + 8, base + 8));  // swiglu
      s.push_back(buf(D, t + 8, t + 9));          // down
      s.push_back(buf(D, t + 9, t + 10, base + 11));  // h + down: next x
      s[size_t(base + 6)].last_use = t + 9;
      x = base + 12;
      t += 10;
    }
    s[size_t(x)].last_use = t;
    return s;
  };
  const auto one = layers(1), many = layers(16);
  const ActivationPlan p1 = plan_activations(one), p16 = plan_activations(many);
  EXPECT_EQ(check_plan(many, p16), "");
  EXPECT_EQ(p16.arena_bytes, p1.arena_bytes);  // the arena does not grow with depth
  EXPECT_LT(p16.arena_bytes * 10, p16.unplanned_bytes);
  EXPECT_EQ(simulate(many, p16), "");
  std::printf("decoder, 16 layers: arena %zu bytes, live lower bound %zu, unplanned %zu\n",
              p16.arena_bytes, p16.live_bytes_max, p16.unplanned_bytes);
}

TEST(ActivationPlan, BadSpecsAreErrors) {
  EXPECT_THROW(plan_activations(std::vector<BufferSpec>{buf(8, 2, 1)}), Error);
  EXPECT_THROW(plan_activations(std::vector<BufferSpec>{buf(8, 0, 1, 1)}), Error);
  EXPECT_THROW(plan_activations(std::vector<BufferSpec>{buf(8, 0, 1, 0)}), Error);
  EXPECT_THROW(plan_activations(std::vector<BufferSpec>{buf(8, 0, 1)}, 48), Error);
  const ActivationPlan p = plan_activations(std::vector<BufferSpec>{});
  EXPECT_EQ(p.arena_bytes, 0u);
  EXPECT_EQ(p.unplanned_bytes, 0u);
}
