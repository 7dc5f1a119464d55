// The scheme registry is complete: every registered scheme gives local's logits, is
// predicted by the planner, runs under `tandem compare`, and the planner's per-rank
// attention work is the work a real run of it does (the runtime's own placement).
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>

#include "support/test_model.hpp"
#include "support/schemes.hpp"
#include "support/test_paths.hpp"
#include "tandem/analysis/planner.hpp"
#include "tandem/comm/in_process.hpp"
#include "tandem/parallel/scheme.hpp"
#include "tandem/runtime/session.hpp"
#include "tandem/runtime/weight_layout.hpp"

using namespace tandem;

namespace {

constexpr int64_t kLayers = 2;

std::shared_ptr<Model> test_model() {
  static std::shared_ptr<Model> m = [] {
    SynthSpec spec;
    spec.n_head = 6;
    spec.n_head_kv = 2;
    spec.n_embd = 48;  // head dim 8
    spec.n_layer = kLayers;
    spec.n_ff = 64;
    spec.n_vocab = 120;
    spec.type = DType::F32;
    return std::shared_ptr<Model>(load_model(test::write_test_model("registry", spec)));
  }();
  return m;
}

std::vector<int32_t> random_ids(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(rng() % 120u);
  return ids;
}


struct SchemeRun {
  std::vector<float> logits;        // rank 0's gathered [N][V]
  std::vector<double> head_pairs;   // per rank
};

SchemeRun run_scheme(const parallel::Scheme& s, int P, const std::vector<int32_t>& ids) {
  SchemeRun out;
  out.head_pairs.assign(size_t(P), 0.0);
  std::mutex mu;
  comm::run_in_process(P, [&](comm::Communicator& comm) {
    SessionOptions so;
    so.scheme = s.name;
    Session session(test_model(), so, comm);
    auto all = session.gather_logits(session.prefill(ids, int64_t(ids.size())));
    const PrefillReport rep = session.measure_prefill(ids);
    const std::lock_guard<std::mutex> lock(mu);
    if (comm.rank() == 0) {
      out.logits = std::move(all);
      for (const RankReport& r : rep.per_rank) out.head_pairs[size_t(r.rank)] = r.head_pairs;
    }
  });
  return out;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& ref, int64_t cols) {
  double worst = 0;
  for (size_t r = 0; r * size_t(cols) < ref.size(); ++r) {
    double diff = 0, scale = 1e-20;
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = r * size_t(cols) + size_t(c);
      diff = std::max(diff, double(std::fabs(a[i] - ref[i])));
      scale = std::max(scale, double(std::fabs(ref[i])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

}  // namespace

TEST(SchemeRegistry, EverySchemeIsExactAgainstLocalAndDoesThePlannedWork) {
  const auto& reg = parallel::scheme_registry();
  ASSERT_EQ(reg.front()->name, "local");
  const auto h = test_model()->hparams();
  const parallel::CostShape shape{h.n_head, h.n_head_kv, h.head_dim, 4};
  for (int64_t n : {7, 64, 131}) {
    const auto ids = random_ids(n, uint32_t(n));
    const SchemeRun local = run_scheme(parallel::parse_scheme("local", 1), 1, ids);
    for (const auto& [scheme, P] : test::schemes_at({2, 3, 4})) {
      const parallel::Scheme* s = &scheme;
      SCOPED_TRACE(s->name + " P=" + std::to_string(P) + " N=" + std::to_string(n));
      const SchemeRun r = run_scheme(*s, P, ids);
      EXPECT_LE(max_rel_diff(r.logits, local.logits, h.n_vocab), 1e-4);
      // The registry's cost formulas count, per rank, the work the run did: every
      // layer's attention over the rank's own placement.
      const auto phases = s->desc->cost(*s, shape, n, P);
      for (int q = 0; q < P; ++q) {
        double planned = 0;
        for (const auto& ph : phases) planned += ph.head_pairs[size_t(q)];
        EXPECT_EQ(r.head_pairs[size_t(q)], planned * double(kLayers)) << "rank " << q;
      }
    }
  }
}

TEST(SchemeRegistry, PlannerPredictsEveryScheme) {
  const auto req = analysis::plan_request("llama3-8b", *analysis::builtin_profile("h100"), 65536, 8,
                                          4, 16);
  const auto plan = analysis::make_plan(req);
  for (const parallel::SchemeDesc* d : parallel::scheme_registry()) {
    const std::string name = d->name == "local" ? "single" : std::string(d->name);
    bool found = false;
    for (const auto& s : plan.strategies)
      if (s.strategy == name) {
        found = true;
        EXPECT_TRUE(s.applicable) << name << ": " << s.note;
        EXPECT_GT(s.prefill_seconds, 0) << name;
        EXPECT_GT(s.memory_bytes, 0) << name;
      }
    EXPECT_TRUE(found) << name << " missing from the plan";
  }
}

TEST(SchemeRegistry, CompareRunsEveryScheme) {
  std::string names;
  for (const parallel::SchemeDesc* d : parallel::scheme_registry())
    if (d->name != "local") names += (names.empty() ? "" : ",") + std::string(d->name);
  const std::string out = test::temp_dir() + "/registry-compare";
  const auto r = test::run(test::tandem_bin() + " compare --lengths 64 --ranks 4 --schemes " + names +
                           " --decode-tokens 2 --naive-max 0 --launcher threads -t 1 --rounds 1 --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(test::read_text(out + "/results.json"));
  for (const parallel::SchemeDesc* d : parallel::scheme_registry()) {
    if (d->name == "local") continue;
    bool ok = false;
    for (const auto& x : j["runs"])
      if (x["ranks"].get<int>() > 1 && parallel::parse_scheme(x["strategy"].get<std::string>(), x["ranks"].get<int>()).kind() ==
          d->name)
        ok = x["ok"].get<bool>() && x["predicted"].is_object() && x["decode_tokens_per_s"].is_number();
    EXPECT_TRUE(ok) << d->name << " did not run, decode or get a prediction under compare";
  }
}
