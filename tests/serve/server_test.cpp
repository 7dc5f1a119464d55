// tandem serve's HTTP layer over the real scheduler and engine, on the shipped tiny model:
// greedy replies equal the single-sequence generation, streams equal whole replies,
// concurrent requests each equal their own single-request output, and bad requests,
// a full queue and clients that leave are answered without disturbing the rest.
#include <httplib.h>
#include <gtest/gtest.h>

#include <future>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/test_model.hpp"
#include "tandem/analysis/loadgen.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/model/model.hpp"
#include "tandem/model/tokenizer.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/generate.hpp"
#include "tandem/serve/scheduler.hpp"
#include "tandem/serve/server.hpp"

using namespace tandem;
using nlohmann::json;

namespace {

// A small synthetic model with the llama-spm vocabulary: unlike the shipped random-weight
// models (whose greedy output is one token repeated whatever the prompt), its
// continuations differ from prompt to prompt, so a reply given to the wrong request shows.
std::shared_ptr<Model> tiny() {
  static const std::shared_ptr<Model> m = [] {
    SynthSpec s;
    s.n_embd = 64;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.n_ff = 128;
    s.n_layer = 2;
    s.type = DType::F32;
    s.weight_scale = 4.0f;
    s.vocab_path = test::shared_path("vocab/ggml-vocab-llama-spm.gguf");
    return Model::load(test::write_test_model("serve-tiny", s));
  }();
  return m;
}

std::vector<int32_t> eog_ids(const Tokenizer& tok) {
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < tok.n_vocab(); ++i)
    if (tok.is_eog(i)) ids.push_back(i);
  return ids;
}

// A server on a free port of 127.0.0.1 over its own engine and scheduler.
struct Running {
  kernels::ThreadPool pool{1};
  Engine engine{*tiny(), pool};
  serve::Scheduler sched;
  serve::Server server;
  explicit Running(serve::SchedulerOptions so = {}, serve::ServerOptions o = {})
      : sched(engine, so, eog_ids(*tiny()->tokenizer())), server(*tiny()->tokenizer(), sched, with_port0(o)) {
    sched.start();
    server.start();
  }
  ~Running() {
    sched.shutdown(5);
    server.stop();
  }
  static serve::ServerOptions with_port0(serve::ServerOptions o) {
    o.port = 0;
    o.ctx_size = 512;
    return o;
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server.port());
    c.set_read_timeout(std::chrono::seconds(120));
    return c;
  }
  json post(const std::string& path, const json& body, int* status = nullptr) const {
    auto c = client();
    auto r = c.Post(path, body.dump(), "application/json");
    if (!r) return json{{"transport_error", httplib::to_string(r.error())}};
    if (status) *status = r->status;
    return json::parse(r->body, nullptr, false);
  }
};

// The greedy continuation of `prompt` by the single-sequence path (tandem generate's).
std::string generate_alone(const std::string& prompt, int n) {
  kernels::ThreadPool pool(1);
  Engine engine(*tiny(), pool);
  const Tokenizer& tok = *tiny()->tokenizer();
  const auto ids = tok.encode(prompt, true);
  KVCache cache = engine.make_cache(int64_t(ids.size()) + n + 1);
  GenerateParams p;
  p.n_predict = n;
  p.sampler.temperature = 0;
  p.stop_at_eog = true;
  std::string text;
  generate(engine, cache, ids, p, [&](int32_t t) { text += tok.piece(t); });
  return text;
}

// The text of an SSE stream: the "text" (completions) or delta content (chat) of each chunk.
std::string stream_text(const std::string& body, bool* done = nullptr, json* usage = nullptr) {
  std::string text;
  loadgen::SseReader r;
  r.feed(body, [&](std::string_view d) {
    if (d == "[DONE]") {
      if (done) *done = true;
      return;
    }
    const auto j = json::parse(d);
    if (j.contains("usage") && j["usage"].is_object() && usage) *usage = j["usage"];
    if (!j.contains("choices") || j["choices"].empty()) return;
    const auto& c = j["choices"][0];
    if (c.contains("text")) text += c["text"].get<std::string>();
    if (c.contains("delta") && c["delta"].contains("content") && c["delta"]["content"].is_string())
      text += c["delta"]["content"].get<std::string>();
  });
  return text;
}

}  // namespace

TEST(Server, HealthModelsAndErrorsInOpenAIShape) {
  serve::ServerOptions o;
  o.api_key = "sk-good";
  o.model_name = "tiny";
  Running s({}, o);
  auto c = s.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  httplib::Headers auth = {{"Authorization", "Bearer sk-good"}};
  auto m = c.Get("/v1/models", auth);
  ASSERT_EQ(m->status, 200);
  EXPECT_EQ(json::parse(m->body)["data"][0]["id"], "tiny");
  auto bad = c.Post("/v1/completions", {{"Authorization", "Bearer sk-bad"}}, "{}", "application/json");
  EXPECT_EQ(bad->status, 401);
  EXPECT_EQ(json::parse(bad->body)["error"]["type"], "authentication_error");
  auto nf = c.Get("/v2/nothing", auth);
  EXPECT_EQ(nf->status, 404);
  EXPECT_TRUE(json::parse(nf->body)["error"].contains("message"));
  auto page = c.Get("/");
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("/v1/chat/completions"), std::string::npos);
}

TEST(Server, GreedyCompletionEqualsGenerateAndStreamEqualsWhole) {
  Running s;
  const std::string prompt = "Once upon a time";
  const std::string want = generate_alone(prompt, 24);
  ASSERT_FALSE(want.empty());
  int status = 0;
  const json whole = s.post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}}, &status);
  ASSERT_EQ(status, 200) << whole.dump();
  EXPECT_EQ(whole["choices"][0]["text"], want);
  EXPECT_EQ(whole["object"], "text_completion");
  EXPECT_EQ(whole["usage"]["completion_tokens"].get<int>() + whole["usage"]["prompt_tokens"].get<int>(),
            whole["usage"]["total_tokens"].get<int>());

  auto c = s.client();
  auto r = c.Post("/v1/completions",
                  json{{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}, {"stream", true},
                       {"stream_options", {{"include_usage", true}}}}.dump(),
                  "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  bool done = false;
  json usage;
  EXPECT_EQ(stream_text(r->body, &done, &usage), want);
  EXPECT_TRUE(done);
  EXPECT_EQ(usage["completion_tokens"], whole["usage"]["completion_tokens"]);
}

TEST(Server, ChatWholeAndStreamed) {
  Running s;
  const json body = {{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}},
                     {"max_tokens", 12},
                     {"temperature", 0}};
  int status = 0;
  const json whole = s.post("/v1/chat/completions", body, &status);
  ASSERT_EQ(status, 200) << whole.dump();
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"]["role"], "assistant");
  json sb = body;
  sb["stream"] = true;
  auto c = s.client();
  auto r = c.Post("/v1/chat/completions", sb.dump(), "application/json");
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(stream_text(r->body), whole["choices"][0]["message"]["content"].get<std::string>());
  EXPECT_NE(r->body.find("\"role\":\"assistant\""), std::string::npos);
}

TEST(Server, ConcurrentGreedyRequestsEqualTheirSingleOutputs) {
  serve::SchedulerOptions so;
  so.parallel = 8;
  Running s(so);
  const int n = 32;
  std::vector<std::string> prompts(n), got(n);
  for (int i = 0; i < n; ++i) prompts[i] = "Story number " + std::to_string(i) + ": once";
  std::vector<std::thread> th;
  for (int i = 0; i < n; ++i)
    th.emplace_back([&, i] {
      const json r = s.post("/v1/completions", {{"prompt", prompts[i]}, {"max_tokens", 10}, {"temperature", 0}});
      got[i] = r.contains("choices") ? r["choices"][0].value("text", std::string("<no text>")) : "<no answer> " + r.dump();
    });
  for (auto& t : th) t.join();
  std::set<std::string> distinct;
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(got[i], generate_alone(prompts[i], 10)) << "request " << i;
    distinct.insert(got[i]);
  }
  EXPECT_GE(distinct.size(), 8u) << "the prompts' continuations should differ, or mixing them up would not show";
}

TEST(Server, MalformedRequestsAreAnsweredAndServingGoesOn) {
  Running s;
  auto c = s.client();
  const std::vector<std::pair<std::string, int>> bodies = {
      {"{", 400},
      {"[]", 400},
      {R"({"prompt": 5})", 400},
      {R"({"prompt": "x", "max_tokens": 0})", 400},
      {R"({"prompt": "x", "temperature": "hot"})", 400},
      {R"({"prompt": "x", "n": 100})", 400},
      {R"({"prompt": [1, -4]})", 400},
      {R"({"prompt": [999999999]})", 400},
      {json{{"prompt", std::vector<int>(600, 5)}}.dump(), 400},  // past the 512-token context
  };
  for (const auto& [b, want] : bodies) {
    auto r = c.Post("/v1/completions", b, "application/json");
    ASSERT_TRUE(r) << b;
    EXPECT_EQ(r->status, want) << b << " -> " << r->body;
    const json e = json::parse(r->body, nullptr, false);
    EXPECT_TRUE(e.contains("error") && e["error"].contains("message")) << r->body;
  }
  auto chat = c.Post("/v1/chat/completions", R"({"messages": [{"role": "user"}]})", "application/json");
  EXPECT_EQ(chat->status, 400);
  int status = 0;
  s.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}}, &status);
  EXPECT_EQ(status, 200);
  const std::string metrics = c.Get("/metrics")->body;
  EXPECT_NE(metrics.find("tandem_requests_total{endpoint=\"completions\",status=\"400\"} 9"), std::string::npos)
      << metrics;
}

TEST(Server, FullQueueAnswers503WithRetryAfter) {
  serve::SchedulerOptions so;
  so.parallel = 1;
  so.queue_limit = 1;
  Running s(so);
  std::vector<std::future<std::pair<int, std::string>>> f;
  for (int i = 0; i < 6; ++i)
    f.push_back(std::async(std::launch::async, [&] {
      auto c = s.client();
      auto r = c.Post("/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 64}, {"ignore_eos", true}}.dump(),
                      "application/json");
      return r ? std::make_pair(r->status, r->status == 503 ? r->get_header_value("Retry-After") : r->body)
               : std::make_pair(0, httplib::to_string(r.error()));
    }));
  int ok = 0, busy = 0;
  for (auto& x : f) {
    const auto [st, retry] = x.get();
    if (st == 200) ++ok;
    if (st != 200 && st != 503) ADD_FAILURE() << st << ": " << retry;
    if (st == 503) {
      ++busy;
      EXPECT_EQ(retry, "1");
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);
  EXPECT_EQ(ok + busy, 6);
}

TEST(Server, ClientLeavingMidStreamFreesItsSequence) {
  Running s;
  {
    httplib::Client c("127.0.0.1", s.server.port());
    int chunks = 0;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json{{"prompt", "Once"}, {"max_tokens", 400}, {"ignore_eos", true}, {"stream", true}}.dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };  // leave
    c.send(req);
    EXPECT_GE(chunks, 3);
  }
  // Within a few steps the sequence is gone and its pages are back (or held by the prefix cache only).
  serve::SchedulerStats st;
  for (int i = 0; i < 200; ++i) {
    st = s.sched.stats();
    if (st.active == 0 && st.kv_pages_used == st.kv_pages_cached) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(st.active, 0);
  EXPECT_EQ(st.kv_pages_used, st.kv_pages_cached);
  EXPECT_GE(st.cancelled, 1);
  EXPECT_LT(st.output_tokens, 400);
}

// Shutdown under load (what SIGTERM does): streams in flight, clients that leave, bad
// requests mixed in. Every well-formed request ends cleanly - its stream complete with
// [DONE], or an error chunk saying it was cancelled, or a 503 once admission has closed -
// and no sequence or page is left behind.
TEST(Server, ShutdownUnderLoadEndsEveryRequestCleanly) {
  serve::SchedulerOptions so;
  so.parallel = 4;
  Running s(so);
  const int n = 12;
  std::vector<std::string> outcome(n);
  std::vector<std::thread> th;
  for (int i = 0; i < n; ++i)
    th.emplace_back([&, i] {
      auto c = s.client();
      if (i % 4 == 3) {  // a malformed body
        auto r = c.Post("/v1/completions", "{\"prompt\": ", "application/json");
        outcome[i] = r && r->status == 400 ? "bad request answered" : "bad request not answered";
        return;
      }
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body = json{{"prompt", "Tale " + std::to_string(i)}, {"max_tokens", 300}, {"ignore_eos", true}, {"stream", true}}
                     .dump();
      req.set_header("Content-Type", "application/json");
      std::string body;
      int chunks = 0;
      const bool leaves = i % 4 == 1;
      req.content_receiver = [&](const char* d, size_t len, uint64_t, uint64_t) {
        body.append(d, len);
        return !(leaves && ++chunks >= 2);
      };
      const auto r = c.send(req);
      if (leaves) {
        outcome[i] = "left";
      } else if (!r) {
        outcome[i] = "transport error " + httplib::to_string(r.error());
      } else if (r->status == 503) {
        outcome[i] = "503";
      } else if (body.find("data: [DONE]") != std::string::npos &&
                 (body.find("\"finish_reason\":\"length\"") != std::string::npos ||
                  body.find("cancelled") != std::string::npos)) {
        outcome[i] = "ended";
      } else {
        outcome[i] = "unclean: " + body.substr(body.size() > 300 ? body.size() - 300 : 0);
      }
    });
  for (int w = 0; w < 500 && s.sched.stats().active < 2; ++w) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  s.sched.shutdown(0.5);
  for (auto& t : th) t.join();
  for (int i = 0; i < n; ++i) {
    const std::string& o = outcome[i];
    EXPECT_TRUE(o == "ended" || o == "503" || o == "left" || o == "bad request answered") << "request " << i << ": " << o;
  }
  const serve::SchedulerStats st = s.sched.stats();
  EXPECT_EQ(st.active, 0);
  EXPECT_EQ(st.queued, 0);
  EXPECT_EQ(st.kv_pages_used, st.kv_pages_cached);
}
