// bench-serve's load generator: the statistics, the server-sent-event reader, and whole
// runs against an in-process server that streams as an OpenAI-compatible one does.
#include <httplib.h>
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "tandem/analysis/loadgen.hpp"
#include "tandem/core/error.hpp"

using namespace tandem;
using namespace tandem::loadgen;

TEST(Loadgen, PercentilesInterpolateBetweenRanks) {
  std::vector<double> v;
  for (int i = 100; i >= 0; --i) v.push_back(i);  // 0..100, unsorted
  const Percentiles p = percentiles(v);
  EXPECT_DOUBLE_EQ(p.median, 50);
  EXPECT_DOUBLE_EQ(p.p99, 99);
  EXPECT_DOUBLE_EQ(p.mean, 50);
  EXPECT_DOUBLE_EQ(p.max, 100);
  EXPECT_DOUBLE_EQ(percentiles({1, 2}).median, 1.5);
  EXPECT_DOUBLE_EQ(percentiles({}).p99, 0);
}

TEST(Loadgen, SummaryFromRequestTimes) {
  LoadOptions o;
  o.concurrency = 2;
  std::vector<RequestResult> r(3);
  r[0] = {true, "", 0.0, 0.1, 0.4, {0.1, 0.2, 0.4}, 3, 8};
  r[1] = {true, "", 0.0, 0.3, 0.5, {0.3, 0.5}, 2, 8};
  r[2].error = "HTTP 503: busy";
  const Summary s = summarize(r, o, 2.0);
  EXPECT_EQ(s.ok, 2);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.output_tokens, 5);
  EXPECT_DOUBLE_EQ(s.output_tokens_per_s, 2.5);
  EXPECT_DOUBLE_EQ(s.requests_per_s, 1.0);
  EXPECT_DOUBLE_EQ(s.total_tokens_per_s, 10.5);
  EXPECT_NEAR(s.ttft_ms.median, 200, 1e-9);  // 100 and 300 ms
  EXPECT_NEAR(s.itl_ms.median, 200, 1e-9);   // gaps 100, 200, 200 ms
  EXPECT_NEAR(s.e2e_ms.max, 500, 1e-9);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.errors[0], "HTTP 503: busy");
  EXPECT_NE(format_summary(s).find("output tokens/s 2.5"), std::string::npos) << format_summary(s);
  EXPECT_EQ(to_json(s)["ttft_ms"]["median"].get<double>(), s.ttft_ms.median);
  EXPECT_EQ(s.ttft_each_ms.size(), 3u);
  EXPECT_NEAR(s.ttft_each_ms[1], 300, 1e-9);
  EXPECT_EQ(s.ttft_each_ms[2], -1.0);
}

TEST(Loadgen, SseReaderJoinsPiecesAtAnyBoundary) {
  const std::string stream = "data: {\"a\":1}\n\n: comment\ndata:{\"b\":2}\r\n\r\ndata: [DONE]\n\n";
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    SseReader r;
    std::vector<std::string> got;
    auto on = [&](std::string_view s) { got.emplace_back(s); };
    r.feed(std::string_view(stream).substr(0, cut), on);
    r.feed(std::string_view(stream).substr(cut), on);
    EXPECT_EQ(got, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "[DONE]"})) << "cut at " << cut;
  }
}

TEST(Loadgen, PromptsShareTheirPrefixOnly) {
  LoadOptions o;
  o.prompt_tokens = 64;
  o.shared_prefix = 40;
  const auto a = prompt_ids(o, 0), b = prompt_ids(o, 1);
  ASSERT_EQ(a.size(), 64u);
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + 40, b.begin()));
  EXPECT_FALSE(std::equal(a.begin() + 40, a.end(), b.begin() + 40));
  for (int32_t id : a) EXPECT_TRUE(id >= o.token_lo && id < o.token_hi);
  EXPECT_EQ(prompt_ids(o, 1), b);  // reproducible
}

namespace {

// A server that streams max_tokens text pieces per request as OpenAI's completions
// endpoint does, counting requests in flight; status 500 for prompts starting with 0.
struct FakeServer {
  httplib::Server srv;
  std::thread th;
  int port = 0;
  std::atomic<int> in_flight{0}, most{0}, served{0};
  std::mutex mu;
  std::vector<nlohmann::json> bodies;
  std::string auth;
  int hold_for = 0;  // the first responses wait (up to 5 s) until this many requests came in

  FakeServer() {
    srv.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      const auto body = nlohmann::json::parse(req.body);
      {
        std::lock_guard lock(mu);
        bodies.push_back(body);
        auth = req.get_header_value("Authorization");
      }
      if (body["prompt"][0] == 0) {
        res.status = 500;
        res.set_content(R"({"error":{"message":"model exploded","type":"server_error"}})", "application/json");
        return;
      }
      const int n = body["max_tokens"];
      const int now = ++in_flight;
      for (int m = most; now > m && !most.compare_exchange_weak(m, now);) {}
      res.set_chunked_content_provider("text/event-stream", [this, n, p = int(body["prompt"].size())](
                                                                size_t, httplib::DataSink& sink) {
        for (int w = 0; w < 5000 && most < hold_for; ++w) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        for (int i = 0; i < n; ++i) {
          const std::string ev = "data: " + nlohmann::json{{"choices", {{{"text", "tok"}, {"index", 0}}}}}.dump() + "\n\n";
          sink.write(ev.data(), ev.size());
        }
        const std::string usage = "data: " + nlohmann::json{{"choices", nlohmann::json::array()},
                                                            {"usage", {{"prompt_tokens", p}, {"completion_tokens", n}}}}
                                                 .dump() + "\n\ndata: [DONE]\n\n";
        sink.write(usage.data(), usage.size());
        --in_flight;
        ++served;
        sink.done();
        return true;
      });
    });
    port = srv.bind_to_any_port("127.0.0.1");
    th = std::thread([this] { srv.listen_after_bind(); });
    while (!srv.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeServer() {
    srv.stop();
    th.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

}  // namespace

TEST(Loadgen, RunsEveryRequestAtTheConcurrencyAsked) {
  FakeServer server;
  server.hold_for = 4;
  LoadOptions o;
  o.url = server.url();
  o.concurrency = 4;
  o.requests = 12;
  o.prompt_tokens = 32;
  o.shared_prefix = 16;
  o.max_tokens = 5;
  o.api_key = "sk-test";
  int progress = 0;
  o.progress = [&](int done, int total) {
    EXPECT_EQ(total, 12);
    progress = done;
  };
  std::vector<RequestResult> r;
  const double wall = run_load(o, r);
  const Summary s = summarize(r, o, wall);
  EXPECT_EQ(s.ok, 12) << format_summary(s);
  EXPECT_EQ(s.output_tokens, 12 * 5);
  EXPECT_EQ(progress, 12);
  EXPECT_EQ(server.served, 12);
  EXPECT_EQ(server.most, 4);
  EXPECT_EQ(server.auth, "Bearer sk-test");
  std::set<std::vector<int>> prompts;
  for (const auto& b : server.bodies) {
    EXPECT_EQ(b["stream"], true);
    EXPECT_EQ(b["ignore_eos"], true);
    EXPECT_EQ(b["max_tokens"], 5);
    prompts.insert(b["prompt"].get<std::vector<int>>());
  }
  EXPECT_EQ(prompts.size(), 12u);
  for (const RequestResult& x : r) {
    EXPECT_EQ(x.token_times.size(), 5u);
    EXPECT_LE(x.start, x.first_token);
    EXPECT_LE(x.first_token, x.end);
  }
}

TEST(Loadgen, ReportsServerAndTransportErrors) {
  FakeServer server;
  LoadOptions o;
  o.url = server.url() + "/v1/";
  o.requests = 2;
  o.token_lo = 0;
  o.token_hi = 1;  // every prompt is all zeros: the fake server fails it
  std::vector<RequestResult> r;
  run_load(o, r);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_FALSE(r[0].ok);
  EXPECT_EQ(r[0].error, "HTTP 500: model exploded");

  o.url = "http://127.0.0.1:1";  // nothing listens
  run_load(o, r);
  EXPECT_FALSE(r[0].ok);
  EXPECT_NE(r[0].error.find("request failed"), std::string::npos) << r[0].error;
}

TEST(Loadgen, RefusesBadOptionsByName) {
  auto refused = [](LoadOptions o, const std::string& name) {
    std::vector<RequestResult> r;
    try {
      run_load(o, r);
      ADD_FAILURE() << name << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  LoadOptions o;
  o.url = "localhost:8080";
  refused(o, "--url");
  o = {};
  o.concurrency = 0;
  refused(o, "--concurrency");
  o = {};
  o.shared_prefix = 500;
  refused(o, "--shared-prefix");
}
