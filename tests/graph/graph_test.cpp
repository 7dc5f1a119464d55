// The graph IR and its passes on small hand-made graphs: invariants are checked, fusion
// rewrites what it should and nothing else, dead nodes and rows go, and the executor's
// results are the same with and without the passes and the memory plan.
#include <gtest/gtest.h>

#include <random>

#include "tandem/core/error.hpp"
#include "tandem/graph/executor.hpp"

namespace tandem::graph {
namespace {

struct W {
  std::vector<float> data;
  kernels::Weight w;
  W(int64_t rows, int64_t cols, std::mt19937& rng) : data(size_t(rows * cols)) {
    std::uniform_real_distribution<float> u(-1, 1);
    for (auto& x : data) x = u(rng);
    w = {DType::F32, rows, cols, data.data(), size_t(cols) * sizeof(float)};
  }
};

// x -> norm -> (a, b); rope(a); swiglu(rope(a), b) -> wo -> out (external, rows
// [out_from, m)); plus a matmul c nothing reads.
struct Toy {
  std::mt19937 rng{3};
  W emb{50, 8, rng}, wa{8, 8, rng}, wb{8, 8, rng}, wc{4, 8, rng}, wo{6, 8, rng};
  std::vector<float> norm = std::vector<float>(8, 1.25f);
  Graph build(int64_t m, int64_t out_from) {
    Graph g;
    g.m = m;
    kernels::RopeSpec rs;
    rs.n_rot = 4;
    g.ropes.push_back({4, rs});
    const ValueId x = g.add_value("x", m, 8), h = g.add_value("h", m, 8);
    const ValueId a = g.add_value("a", m, 8), b = g.add_value("b", m, 8);
    const ValueId c = g.add_value("c", m, 4), ar = g.add_value("a_rope", m, 8);
    const ValueId act = g.add_value("act", m, 8), out = g.add_value("out", m, 6);
    g.add_node(OpKind::Embed, "embed", {}, x).mats.push_back({emb.w, nullptr, x});
    Node& n = g.add_node(OpKind::RmsNorm, "norm", {x}, h);
    n.norm_w = norm.data();
    n.eps = 1e-5f;
    g.add_node(OpKind::MatMul, "wa", {h}, -1).mats.push_back({wa.w, nullptr, a});
    g.add_node(OpKind::MatMul, "wb", {h}, -1).mats.push_back({wb.w, nullptr, b});
    g.add_node(OpKind::MatMul, "wc", {h}, -1).mats.push_back({wc.w, nullptr, c});
    g.add_node(OpKind::Rope, "rope", {a}, ar).rope_heads = 2;
    g.add_node(OpKind::SwiGlu, "swiglu", {ar, b}, act);
    g.add_node(OpKind::MatMul, "wo", {act}, -1).mats.push_back({wo.w, nullptr, out});
    g.values[size_t(out)].external = true;
    g.values[size_t(out)].row0 = out_from;
    g.nodes.back().row_from = out_from;
    for (auto& node : g.nodes) node.phase = "toy";
    return g;
  }
};

std::vector<float> execute(Graph g, bool plan, int64_t out_from) {
  Executor ex(std::move(g), {plan, false});
  const int64_t m = ex.graph().m;
  std::vector<int32_t> ids(static_cast<size_t>(m)), pos(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) ids[size_t(i)] = int32_t(i * 7 % 50), pos[size_t(i)] = int32_t(i + 5);
  std::vector<float> out(size_t((m - out_from) * 6), -1.0f);
  float* outs[1] = {out.data()};
  kernels::ThreadPool pool(2);
  ex.run(ids.data(), pos.data(), outs, {}, pool);
  return out;
}

TEST(Graph, ValidateRejectsBrokenGraphs) {
  Toy t;
  Graph g = t.build(4, 0);
  EXPECT_NO_THROW(g.validate());
  Graph swapped = g;
  std::swap(swapped.nodes[1], swapped.nodes[2]);  // reads h before it is written
  EXPECT_THROW(swapped.validate(), Error);
  Graph twice = g;
  twice.nodes[3].mats[0].out = twice.nodes[2].mats[0].out;  // a written twice (wrong shape too)
  EXPECT_THROW(twice.validate(), Error);
}

TEST(Graph, PassesFuseDropAndKeepResults) {
  Toy t;
  for (int64_t out_from : {0, 3, 9}) {
    const Graph plain = t.build(10, out_from);
    Graph g = plain;
    PassStats s;
    eliminate_dead(g, s);
    fuse(g, s);
    EXPECT_EQ(s.dead_nodes, 1);  // wc: nothing reads c
    // a and b merge into one matmul that normalizes its input and ropes a as it writes
    // it; the SwiGLU then reads a roped value, so it cannot fold into that matmul.
    EXPECT_EQ(s.fused_rope, 1);
    EXPECT_EQ(s.fused_glu, 0);
    EXPECT_EQ(s.fused_norm, 1);
    EXPECT_EQ(g.nodes.size(), 4u) << g.dump();  // embed, norm+a+b(+rope), swiglu, wo
    const std::string d = g.dump();
    EXPECT_NE(d.find("+rmsnorm"), std::string::npos) << d;
    const auto a = execute(plain, true, out_from), b = execute(g, true, out_from),
               c = execute(g, false, out_from);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_NEAR(a[i], b[i], 1e-5f * (1 + std::fabs(a[i]))) << i;
      EXPECT_EQ(b[i], c[i]) << i;
    }
  }
}

}  // namespace
}  // namespace tandem::graph

namespace tandem::graph {
namespace {

// Every node of a step, once, in order, with the rows it computed.
struct Recorder final : OpTimer {
  std::vector<std::pair<std::string, int64_t>> seen;
  void add(const Node& n, int64_t rows, double seconds) override {
    EXPECT_GE(seconds, 0);
    seen.emplace_back(n.name, rows);
  }
};

TEST(Graph, OpTimerHearsEveryNodeOnceWithItsRows) {
  Toy t;
  Executor ex(t.build(5, 3), {true, false});
  std::vector<int32_t> ids = {1, 2, 3, 4, 5}, pos = {0, 1, 2, 3, 4};
  std::vector<float> out(2 * 6);
  float* outs[1] = {out.data()};
  kernels::ThreadPool pool(1);
  Recorder r;
  ex.run(ids.data(), pos.data(), outs, {}, pool, nullptr, &r);
  ASSERT_EQ(r.seen.size(), ex.graph().nodes.size());
  for (size_t i = 0; i < r.seen.size(); ++i) {
    const Node& n = ex.graph().nodes[i];
    EXPECT_EQ(r.seen[i].first, n.name);
    EXPECT_EQ(r.seen[i].second, 5 - n.row_from) << n.name;
  }
  EXPECT_EQ(r.seen.back().second, 2);  // wo: the output rows [3, 5) only
  r.seen.clear();
  ex.run(ids.data(), pos.data(), outs, {}, pool);  // no timer: nothing heard
  EXPECT_TRUE(r.seen.empty());
}

}  // namespace
}  // namespace tandem::graph
