// The sequence-parallel lane of tandem serve on in-process ranks: a long prompt served by
// P ranks (rank 0 sampling, the others following) gives the tokens and logprobs of the
// prompt decoded alone on one rank, for every scheme; a prompt longer than one rank's KV
// budget is served, one longer than all ranks' is refused by name; stops, cancels, idle
// time past the communicator's timeout and shutdown leave the ranks in step.
#include <map>
#include <numeric>
#include <thread>

#include "scheduler_support.hpp"
#include "tandem/comm/in_process.hpp"
#include "tandem/runtime/session.hpp"
#include "tandem/serve/sp_lane.hpp"

namespace tandem::serve {
namespace {

using test::Alone;
using test::RecordingSink;

std::shared_ptr<const Model> shared_model() {
  return std::shared_ptr<const Model>(std::shared_ptr<const Model>{}, &test::sched_model());
}

const Alone& reference(const std::vector<int32_t>& prompt, int n) {
  static std::map<std::pair<std::vector<int32_t>, int>, Alone> cache;
  static std::mutex mu;
  std::lock_guard lk(mu);
  auto it = cache.find({prompt, n});
  if (it == cache.end()) {
    kernels::ThreadPool tp(1);
    Engine e(test::sched_model(), tp);
    it = cache.emplace(std::make_pair(prompt, n), test::alone_logprobs(e, prompt, n)).first;
  }
  return it->second;
}

// Runs `on_rank0(lane)` on rank 0 of P in-process ranks (the others follow), then stops
// the lane.
void with_lane(int P, const std::string& scheme, SpLaneOptions lo,
               const std::function<void(SpLane&)>& on_rank0, double comm_timeout = 60) {
  comm::run_in_process(P, [&](comm::Communicator& c) {
    c.set_timeout(comm_timeout);
    SessionOptions so;
    so.scheme = scheme;
    so.threads = 1;
    so.engine.kv.page_tokens = 0;
    Session s(shared_model(), so, c);
    if (c.rank() != 0) return sp_follow(s);
    SpLane lane(s, lo, {});
    lane.start();
    on_rank0(lane);
    lane.shutdown(10);
  });
}

SpLaneOptions options(int64_t rank_kv_tokens) {
  SpLaneOptions o;
  o.min_tokens = 1;
  o.rank_kv_tokens = rank_kv_tokens;
  return o;
}

TEST(SpLane, EveryScheme_TokensAndLogprobsOfTheSequenceAlone) {
  std::mt19937 rng(17);
  const auto a = test::random_prompt(rng, 37), b = test::random_prompt(rng, 50);
  const int n = 6;
  const std::vector<std::pair<int, std::string>> runs = {
      {2, "ring"}, {2, "zigzag"}, {2, "ulysses"}, {2, "pass-q"}, {3, "ring"}, {3, "zigzag"}, {4, "hybrid:2x2"}};
  for (const auto& [P, scheme] : runs) {
    const std::string what = scheme + " on " + std::to_string(P) + " ranks";
    with_lane(P, scheme, options(1000), [&](SpLane& lane) {
      EXPECT_EQ(lane.ranks(), P);
      for (const auto* prompt : {&a, &b}) {
        auto k = std::make_shared<RecordingSink>();
        ASSERT_TRUE(lane.submit(*prompt, test::greedy(n), k));
        ASSERT_TRUE(k->wait()) << what;
        EXPECT_EQ(k->why(), Finish::Length) << what << ": " << k->error();
        test::expect_as_alone(*k, reference(*prompt, n), what);
        EXPECT_EQ(k->stats().prompt_tokens, int64_t(prompt->size()));
      }
      const SpLaneStats st = lane.stats();
      EXPECT_EQ(st.finished, 2);
      EXPECT_EQ(st.prompt_tokens, 87);
      EXPECT_EQ(st.output_tokens, 2 * n);
      EXPECT_GT(st.last_prefill_s, 0.0);
    });
  }
}

TEST(SpLane, PromptLongerThanOneRankHolds_ServedAcrossRanks_LongerThanAllRefused) {
  std::mt19937 rng(5);
  const auto fits = test::random_prompt(rng, 70), too_long = test::random_prompt(rng, 90);
  with_lane(2, "zigzag", options(40), [&](SpLane& lane) {
    // 70 tokens and 6 more: 38 per rank under zigzag; one rank holds 40.
    EXPECT_GE(lane.max_prompt_tokens(), 70);
    EXPECT_LT(lane.max_prompt_tokens(), 81);
    auto k = std::make_shared<RecordingSink>();
    ASSERT_TRUE(lane.submit(fits, test::greedy(6), k));
    ASSERT_TRUE(k->wait());
    test::expect_as_alone(*k, reference(fits, 6), "70 tokens on 2 ranks of 40");
    // Output is cut where the ranks are full: a context that ends the sequence.
    auto cut = std::make_shared<RecordingSink>();
    ASSERT_TRUE(lane.submit(fits, test::greedy(50), cut));
    ASSERT_TRUE(cut->wait());
    EXPECT_EQ(cut->why(), Finish::Length);
    EXPECT_GE(cut->tokens().size(), 6u);
    EXPECT_LE(int64_t(cut->tokens().size()), 2 * 40 - 70);
    // Longer than both ranks hold: refused at once, naming the limit.
    auto no = std::make_shared<RecordingSink>();
    ASSERT_TRUE(lane.submit(too_long, test::greedy(4), no));
    ASSERT_TRUE(no->wait(1));
    EXPECT_EQ(no->why(), Finish::Error);
    EXPECT_NE(no->error().find("90 tokens"), std::string::npos) << no->error();
    EXPECT_NE(no->error().find("2 ranks"), std::string::npos) << no->error();
  });
}

TEST(SpLane, StopCancelAndIdlePastTheTimeoutKeepTheRanksInStep) {
  std::mt19937 rng(8);
  const auto p = test::random_prompt(rng, 33);
  SpLaneOptions lo = options(1000);
  lo.heartbeat_s = 0.1;
  with_lane(
      2, "ring", lo,
      [&](SpLane& lane) {
        // The sink stops after 2 tokens (a stop string).
        auto stop = std::make_shared<RecordingSink>();
        stop->stop_after = 2;
        stop->by_text = true;
        ASSERT_TRUE(lane.submit(p, test::greedy(20), stop));
        ASSERT_TRUE(stop->wait());
        EXPECT_EQ(stop->why(), Finish::Stop);
        EXPECT_EQ(stop->tokens().size(), 2u);
        // Cancelled from its own token callback after 3.
        auto cancelled = std::make_shared<RecordingSink>();
        uint64_t id = 0;
        std::atomic<bool> have_id{false};
        cancelled->hook = [&](int n) {
          if (n == 3) {
            while (!have_id) std::this_thread::yield();
            lane.cancel(id);
          }
        };
        id = *lane.submit(p, test::greedy(50), cancelled);
        have_id = true;
        ASSERT_TRUE(cancelled->wait());
        EXPECT_EQ(cancelled->why(), Finish::Cancelled);
        EXPECT_LE(cancelled->tokens().size(), 4u);
        // Idle for longer than the communicator's timeout (1 s): the heartbeats keep the
        // other rank waiting, and the next request still equals the sequence alone.
        std::this_thread::sleep_for(std::chrono::milliseconds(2500));
        auto again = std::make_shared<RecordingSink>();
        ASSERT_TRUE(lane.submit(p, test::greedy(5), again));
        ASSERT_TRUE(again->wait());
        test::expect_as_alone(*again, reference(p, 5), "after a stop, a cancel and idle time");
        const SpLaneStats st = lane.stats();
        EXPECT_EQ(st.cancelled, 1);
        EXPECT_EQ(st.finished, 2);
      },
      1.0);
}

TEST(SpLane, ShutdownEndsEveryRequestAndStopsTheOtherRanks) {
  std::mt19937 rng(9);
  const auto p = test::random_prompt(rng, 40);
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  comm::run_in_process(2, [&](comm::Communicator& c) {
    SessionOptions so;
    so.threads = 1;
    Session s(shared_model(), so, c);
    if (c.rank() != 0) return sp_follow(s);
    SpLane lane(s, options(1000), {});
    lane.start();
    for (int i = 0; i < 3; ++i) {
      sinks.push_back(std::make_shared<RecordingSink>());
      ASSERT_TRUE(lane.submit(p, test::greedy(400), sinks.back()));
    }
    lane.shutdown(0);
    EXPECT_FALSE(lane.submit(p, test::greedy(4), std::make_shared<RecordingSink>()));
  });  // returns: rank 1 was told to stop
  for (const auto& k : sinks) {
    ASSERT_EQ(k->finishes(), 1);
    EXPECT_EQ(k->why(), Finish::Cancelled);
  }
}

TEST(SpLane, ReportTokenGivesTheTopLogprobsOfTheRow) {
  std::mt19937 rng(2);
  std::normal_distribution<float> d(0, 3);
  std::vector<float> row(300);
  for (float& x : row) x = d(rng);
  row[7] = row[8];  // a tie: the lower id first
  std::vector<int32_t> order(row.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
  double sum = 0;
  for (float x : row) sum += std::exp(double(x));
  for (int k : {0, 1, 5, 20}) {
    RecordingSink sink;
    SequenceStats st;
    std::string error;
    GenParams p = test::greedy(10);
    p.top_logprobs = k;
    EXPECT_FALSE(report_token(row, 42, p, {}, sink, st, 0.5, error));
    const TokenEvent ev = sink.events().at(0);
    EXPECT_NEAR(ev.logprob, row[42] - std::log(sum), 1e-5);
    ASSERT_EQ(ev.top.size(), size_t(k));
    for (int i = 0; i < k; ++i) {
      EXPECT_EQ(ev.top[size_t(i)].first, order[size_t(i)]) << "k " << k << ", rank " << i;
      EXPECT_NEAR(ev.top[size_t(i)].second, row[size_t(order[size_t(i)])] - std::log(sum), 1e-5);
    }
    EXPECT_EQ(st.output_tokens, 1);
    EXPECT_EQ(st.first_token_s, 0.5);
  }
  // An end-of-sequence token ends the sequence unreported; max_tokens ends it after.
  RecordingSink sink;
  SequenceStats st;
  std::string error;
  const std::vector<int32_t> eos = {42};
  GenParams p = test::greedy(1);
  p.ignore_eos = false;
  EXPECT_EQ(report_token(row, 42, p, eos, sink, st, 0, error), Finish::Stop);
  EXPECT_TRUE(sink.events().empty());
  EXPECT_EQ(report_token(row, 41, p, eos, sink, st, 0, error), Finish::Length);
  EXPECT_EQ(sink.events().size(), 1u);
}

}  // namespace
}  // namespace tandem::serve
