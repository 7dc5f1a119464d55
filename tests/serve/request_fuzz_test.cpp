// Randomized mutation of request bodies (libFuzzer-style: byte edits, dictionary tokens,
// splices, and field values swapped for values of random types), fixed seed, bounded time.
// The parsers must answer every body without throwing, with a 400 naming a field or a valid
// request whose values are in range.
#include <gtest/gtest.h>
#include <tandem/serve/request.hpp>

#include <chrono>
#include <cstdio>
#include <random>

namespace tandem::serve {
namespace {

using nlohmann::json;

const char* const kSeeds[] = {
    R"({"model":"m","prompt":"Once upon","max_tokens":8,"temperature":0.7,"top_p":0.9,)"
    R"("stop":["\n","."],"n":2,"stream":true,"stream_options":{"include_usage":true},)"
    R"("logprobs":2,"seed":5,"top_k":40})",
    R"({"prompt":[1,2,3],"echo":true,"presence_penalty":0.1})",
    R"({"prompt":[[4,5]],"frequency_penalty":-1,"user":"x"})",
    R"({"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":)"
    R"([{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"max_completion_tokens":4,)"
    R"("logprobs":true,"top_logprobs":3,"stream":false})",
    R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]})",
};

const char* const kDict[] = {"{", "}", "[", "]", "\"", ":", ",", "null", "true", "false",
                             "0", "-1", "1e309", "-0.0", "18446744073709551616", "2.5",
                             "\"prompt\"", "\"messages\"", "\"role\"", "\"content\"", "\\u0000",
                             "\xC3", "\xF0\x9F", "\"stop\"", "\"n\"", "\"max_tokens\""};

json random_value(std::mt19937_64& rng, int depth) {
  switch (rng() % (depth > 3 ? 6 : 8)) {
    case 0: return nullptr;
    case 1: return rng() % 2 == 0;
    case 2: return static_cast<int64_t>(rng()) >> (rng() % 64);
    case 3: return static_cast<uint64_t>(rng());
    case 4: return (static_cast<double>(rng() % 2000) - 1000.0) / 7.0;
    case 5: {
      std::string s(rng() % 6, ' ');
      for (char& c : s) c = static_cast<char>(rng() % 256);
      return s;
    }
    case 6: {
      json a = json::array();
      for (int i = rng() % 4; i > 0; --i) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      json o = json::object();
      const char* keys[] = {"role", "content", "type", "text", "include_usage", "x"};
      for (int i = rng() % 4; i > 0; --i) o[keys[rng() % 6]] = random_value(rng, depth + 1);
      return o;
    }
  }
}

// Replaces one value somewhere in the object (a top-level field or one level below).
std::string mutate_structure(std::mt19937_64& rng, json j) {
  json* target = &j;
  while (!target->empty() && (target->is_object() || target->is_array()) && rng() % 3 != 0) {
    auto it = target->begin();
    std::advance(it, rng() % target->size());
    target = &*it;
  }
  *target = random_value(rng, 0);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string mutate_bytes(std::mt19937_64& rng, std::string s) {
  for (int k = 1 + rng() % 4; k > 0; --k) {
    size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 5) {
      case 0: if (at < s.size()) s[at] = static_cast<char>(rng() % 256); break;
      case 1: s.insert(at, kDict[rng() % std::size(kDict)]); break;
      case 2: s.erase(at, rng() % 8); break;
      case 3: s.resize(at); break;
      default: s.insert(at, s.substr(rng() % (s.size() + 1), rng() % 16)); break;
    }
  }
  return s;
}

void check_params(const SamplingParams& p, const RequestLimits& lim) {
  EXPECT_GE(p.max_tokens, 1);
  EXPECT_LE(p.max_tokens, lim.max_tokens);
  EXPECT_TRUE(p.temperature >= 0 && p.temperature <= 2);
  EXPECT_TRUE(p.top_p > 0 && p.top_p <= 1);
  EXPECT_TRUE(p.n >= 1 && p.n <= 16);
  EXPECT_GE(p.top_k, 0);
  EXPECT_LE(p.stop.size(), 4u);
  for (const auto& s : p.stop) EXPECT_FALSE(s.empty());
  if (p.include_usage) {
    EXPECT_TRUE(p.stream);
  }
}

template <typename T>
void check_answer(const Parsed<T>& r, const std::string& body, int& ok, int& errors) {
  if (!r.ok()) {
    ++errors;
    ASSERT_EQ(r.error().http_status, 400) << r.error().message << "\nbody: " << body;
    EXPECT_EQ(r.error().type, "invalid_request_error");
    EXPECT_FALSE(r.error().message.empty());
    EXPECT_FALSE(dump_json(to_json(r.error())).empty());
  } else {
    ++ok;
  }
}

TEST(RequestFuzz, RandomBodiesNeverThrowAndAlwaysAnswer) {
  std::mt19937_64 rng(20240612);
  RequestLimits lim{512, 1000};
  std::vector<json> seeds;
  for (const char* s : kSeeds) seeds.push_back(json::parse(s));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int ok = 0, errors = 0, runs = 0;
  for (; runs < 40000 && std::chrono::steady_clock::now() < deadline; ++runs) {
    const json& seed = seeds[rng() % seeds.size()];
    std::string body = rng() % 2 == 0 ? mutate_structure(rng, seed)
                                      : mutate_bytes(rng, seed.dump());
    if (rng() % 8 == 0) body = mutate_bytes(rng, body);
    auto c = parse_completion_request(body, lim);
    check_answer(c, body, ok, errors);
    if (c.ok()) {
      check_params(c.value().params, lim);
      if (auto* ids = std::get_if<std::vector<int32_t>>(&c.value().prompt)) {
        for (int32_t id : *ids) EXPECT_TRUE(id >= 0 && id < lim.vocab_size);
      }
    }
    auto ch = parse_chat_request(body, lim);
    check_answer(ch, body, ok, errors);
    if (ch.ok()) {
      check_params(ch.value().params, lim);
      EXPECT_FALSE(ch.value().messages.empty());
      for (const auto& m : ch.value().messages)
        EXPECT_TRUE(m.role == "system" || m.role == "user" || m.role == "assistant");
    }
    if (HasFatalFailure()) return;
  }
  std::printf("%d bodies: %d answers valid, %d errors\n", runs, ok, errors);
  // Both outcomes were exercised, many times.
  EXPECT_GT(runs, 1000);
  EXPECT_GT(ok, runs / 20);
  EXPECT_GT(errors, runs / 4);
  // Deep nesting does not overflow the stack.
  std::string deep(200000, '[');
  check_answer(parse_completion_request(deep, lim), deep, ok, errors);
  std::string deep_ok = "{\"prompt\":\"x\",\"extra\":" + std::string(100000, '[') +
                        std::string(100000, ']') + "}";
  EXPECT_TRUE(parse_completion_request(deep_ok, lim).ok());
}

}  // namespace
}  // namespace tandem::serve
