// Every sequential optimization switched off, alone or all together, must give the
// logits of the default engine (all on), and each must do what it claims: the graph
// passes fuse and drop what they say, the memory plan needs less than one buffer per
// value, graphs are built once per shape unless reuse is off.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <cstdlib>
#include <numeric>

#include "support/test_model.hpp"
#include "support/test_paths.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/model/synth.hpp"
#include "tandem/kernels/fused.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/forward_graph.hpp"
#include "tandem/runtime/memory_estimate.hpp"

using namespace tandem;

namespace {

std::string make_model(const std::string& name, DType type, bool bias) {
  return test::write_test_model(name, {.n_embd = 64, .n_layer = 3, .n_head = 4, .n_head_kv = 2,
                                       .n_ff = 160, .n_ctx = 1024, .type = type, .seed = 11,
                                       .n_vocab = 260, .qkv_bias = bias});
}

struct Logits {
  std::vector<float> prefill;  // logits of the last 3 prompt rows
  std::vector<float> decode;   // logits of 4 decode steps
};

// A prompt of 37 tokens in chunks of 16 (three shapes), then 4 decode steps.
Logits run(const Model& m, kernels::ThreadPool& pool, const EngineOptions& o) {
  Engine e(m, pool, 16);
  e.set_options(o);
  const int64_t V = m.hparams().n_vocab;
  std::vector<int32_t> ids(37), pos(37);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 5) % size_t(V));
  std::iota(pos.begin(), pos.end(), 0);
  KVCache cache = e.make_cache(64);
  Logits r;
  r.prefill.resize(size_t(3 * V));
  e.forward(cache, ids, pos, 3, r.prefill.data());
  for (int32_t s = 0; s < 4; ++s) {
    const int32_t id = (s * 11 + 3) % int32_t(V), p = 37 + s;
    std::vector<float> l(static_cast<size_t>(V));
    e.forward(cache, {&id, 1}, {&p, 1}, 1, l.data());
    r.decode.insert(r.decode.end(), l.begin(), l.end());
  }
  return r;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double amax = 0, d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    amax = std::max(amax, std::fabs(double(a[i])));
    d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
  }
  return d / std::max(amax, 1e-30);
}

std::vector<std::pair<std::string, EngineOptions>> configurations() {
  std::vector<std::pair<std::string, EngineOptions>> c;
  EngineOptions o;
  c.emplace_back("no-flash-attn", o);
  c.back().second.flash_attention = false;
  c.emplace_back("no-memory-plan", o);
  c.back().second.memory_plan = false;
  c.emplace_back("no-fusion", o);
  c.back().second.fusion = false;
  c.emplace_back("no-graph-reuse", o);
  c.back().second.graph_reuse = false;
  c.emplace_back("reference", o);
  c.back().second.reference_kernels = true;
  EngineOptions off;
  off.reference_kernels = true;
  off.flash_attention = off.memory_plan = off.fusion = off.graph_reuse = false;
  c.emplace_back("all-off", off);
  return c;
}

class EngineOptionsTest : public ::testing::TestWithParam<std::tuple<DType, bool>> {};

TEST_P(EngineOptionsTest, EveryConfigurationGivesTheSameLogits) {
  const auto [type, bias] = GetParam();
  const auto m = load_model(make_model("opts_" + std::string(dtype_name(type)) +
                                            (bias ? "_bias" : ""), type, bias));
  for (int threads : {1, 2}) {
    kernels::ThreadPool pool(threads);
    const Logits base = run(*m, pool, EngineOptions{});
    for (const auto& [name, o] : configurations()) {
      const Logits r = run(*m, pool, o);
      // Quantized weights: the optimized matmul quantizes activations to 8 bits, the
      // reference keeps them f32, so the reference configurations differ more.
      const bool loose = o.reference_kernels && (type == DType::Q8_0 || type == DType::Q4_0);
      const double tol = loose ? 3e-2 : 1e-4;
      EXPECT_LT(max_rel_diff(base.prefill, r.prefill), tol) << name << " threads " << threads;
      EXPECT_LT(max_rel_diff(base.decode, r.decode), tol) << name << " threads " << threads;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, EngineOptionsTest,
                         ::testing::Values(std::make_tuple(DType::F32, false),
                                           std::make_tuple(DType::F16, true),
                                           std::make_tuple(DType::Q8_0, false),
                                           std::make_tuple(DType::Q4_0, true)));

// Weight repacking at load (lay_out_weights) against TANDEM_NO_REPACK=1: the same
// logits up to float summation order; where the kernels in use have a packed layout
// every Q8_0/Q4_0 matrix gets one (n_ff 160: an odd block count in w_down; 32 K/V rows
// and a 260-row output: panel tails).
TEST(EngineOptions, RepackedWeightsGiveTheSameLogits) {
  for (DType type : {DType::Q8_0, DType::Q4_0}) {
    SCOPED_TRACE(dtype_name(type));
    const std::string path = make_model("opts_repack_" + std::string(dtype_name(type)), type, true);
    const auto packed = load_model(path);
    ::setenv("TANDEM_NO_REPACK", "1", 1);
    const auto plain = load_model(path);
    ::unsetenv("TANDEM_NO_REPACK");
    EXPECT_EQ(plain->packed_bytes(), 0u);
    EXPECT_EQ(plain->layers[0].w_down.packed, nullptr);
    const size_t per_matrix = kernels::packed_size(packed->layers[0].w_down);
    if (per_matrix > 0) {
      // Every matrix read per token is packed: weight_bytes counts exactly those copies.
      EXPECT_EQ(packed->packed_bytes(), packed->weight_bytes());
      for (const LayerWeights& l : packed->layers)
        for (const MatrixView* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
          EXPECT_NE(w->packed, nullptr);
      EXPECT_NE(packed->output.packed, nullptr);
    } else {
      EXPECT_EQ(packed->packed_bytes(), 0u);
    }
    for (int threads : {1, 2}) {
      kernels::ThreadPool pool(threads);
      const Logits a = run(*packed, pool, EngineOptions{});
      const Logits b = run(*plain, pool, EngineOptions{});
      EXPECT_LT(max_rel_diff(a.prefill, b.prefill), 1e-4) << "threads " << threads;
      EXPECT_LT(max_rel_diff(a.decode, b.decode), 1e-4) << "threads " << threads;
      EXPECT_GT(std::fabs(a.decode[0]) + std::fabs(a.decode[1]), 0.0);  // not all zero
    }
  }
}

// Pages of [lo, hi) present in this process (/proc/self/pagemap: bit 63 of each entry).
size_t present_pages(uintptr_t lo, uintptr_t hi) {
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const int fd = ::open("/proc/self/pagemap", O_RDONLY);
  EXPECT_GE(fd, 0);
  size_t n = 0;
  for (uintptr_t a = lo / page * page; fd >= 0 && a < hi; a += page) {
    uint64_t e = 0;
    EXPECT_EQ(::pread(fd, &e, sizeof e, off_t(a / page * sizeof e)), ssize_t(sizeof e));
    n += (e >> 63) & 1;
  }
  if (fd >= 0) ::close(fd);
  return n;
}

// After the layout step the forward pass reads nothing from the file's mapping but the
// embedding's rows (norm vectors and biases included: a read of one between two matrices
// mapped whole page-cache folios of those matrices again), for untied, tied and biased
// models, packed or not. Pages farther than a large folio (2 MiB) from the embedding stay
// out of the process.
TEST(EngineOptions, LaidOutModelReadsOnlyTheEmbeddingFromTheFile) {
  constexpr uintptr_t kFolio = uintptr_t(2) << 20;
  for (DType type : {DType::F16, DType::Q8_0}) {
    for (bool tied : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(type)) + (tied ? " tied" : " untied"));
      const std::string path = test::write_test_model(
          "opts_mapping_" + std::string(dtype_name(type)) + (tied ? "_tied" : ""),
          {.n_embd = 256, .n_layer = 8, .n_head = 4, .n_head_kv = 2, .n_ff = 1024,
           .n_ctx = 1024, .type = type, .seed = 11, .n_vocab = 260, .qkv_bias = true,
           .tied_output = tied});
      const auto m = load_model(path);
      kernels::ThreadPool pool(2);
      const Logits a = run(*m, pool, EngineOptions{});
      const auto base = reinterpret_cast<uintptr_t>(m->file().bytes());
      const auto e0 = reinterpret_cast<uintptr_t>(m->tok_embd.data), e1 = e0 + m->tok_embd.nbytes();
      const uintptr_t end = base + m->file().file_size();
      ASSERT_GT(end, e1 + 2 * kFolio);  // the model reaches well past the guard
      EXPECT_EQ(present_pages(base, e0 > base + kFolio ? e0 - kFolio : base), 0u);
      EXPECT_EQ(present_pages(e1 + kFolio, end), 0u);
      EXPECT_GE(m->resident_weight_bytes(), m->weight_bytes());
      EXPECT_GT(std::fabs(a.decode[0]) + std::fabs(a.decode[1]), 0.0);  // it ran
    }
  }
}

TEST(EngineOptions, PassesFuseAndDropWhatTheySay) {
  const auto m = load_model(make_model("opts_passes", DType::F32, false));
  kernels::ThreadPool pool(1);
  Engine e(*m, pool, 16);
  std::vector<int32_t> ids(16, 7), pos(16);
  std::iota(pos.begin(), pos.end(), 0);
  KVCache cache = e.make_cache(16);
  std::vector<float> logits(static_cast<size_t>(m->hparams().n_vocab));
  e.forward(cache, ids, pos, 1, logits.data());
  const graph::PassStats& p = e.last_passes();
  const int L = int(m->hparams().n_layer);
  EXPECT_EQ(p.fused_qkv, L);
  EXPECT_EQ(p.fused_glu, L);
  EXPECT_EQ(p.fused_rope, 2 * L);
  EXPECT_EQ(p.fused_norm, 2 * L + 1);  // attention and FFN norms, and the output norm
  // One output row: the last layer computes its output projection and FFN (wo, add,
  // norm, gate, up, swiglu, down, add: 8 nodes) on 1 of 16 rows, as the output norm and
  // projection do (2 nodes).
  EXPECT_EQ(p.dead_rows, 10 * 15);
  // A step with no logits: the last layer's post-attention nodes are dead.
  graph::Graph g = build_forward_graph(*m, 16, 16);
  graph::PassStats s;
  graph::eliminate_dead(g, s);
  EXPECT_EQ(s.dead_nodes, 8);
  EXPECT_EQ(g.nodes.back().kind, graph::OpKind::Attention);
}

TEST(EngineOptions, MemoryPlanAndGraphReuse) {
  const auto m = load_model(make_model("opts_mem", DType::F32, false));
  kernels::ThreadPool pool(1);
  for (bool reuse : {true, false}) {
    EngineOptions o;
    o.graph_reuse = reuse;
    Engine e(*m, pool, 16);
    e.set_options(o);
    std::vector<int32_t> ids(16, 3), pos(16);
    std::iota(pos.begin(), pos.end(), 0);
    KVCache cache = e.make_cache(32);
    std::vector<float> logits(static_cast<size_t>(m->hparams().n_vocab));
    e.forward(cache, ids, pos, 1, logits.data());
    // The --max-memory estimate of a step's activations covers the planned arena.
    EXPECT_GE(activation_bytes(m->hparams(), 16), e.last_memory().planned_bytes);
    uint64_t plans_after_first_decode = 0;
    for (int32_t s = 0; s < 5; ++s) {
      const int32_t id = 9, p = 16 + s;
      e.forward(cache, {&id, 1}, {&p, 1}, 1, logits.data());
      if (s == 0) plans_after_first_decode = kernels::matmul_plans_made();
    }
    EXPECT_EQ(e.graphs_built(), reuse ? 2 : 6);
    // Kernel choices are made when a graph is built: a replayed graph makes none, a
    // graph built every step makes them every step.
    const uint64_t more = kernels::matmul_plans_made() - plans_after_first_decode;
    if (reuse)
      EXPECT_EQ(more, 0u);
    else
      EXPECT_GT(more, 0u);
    const graph::MemoryStats& mem = e.last_memory();
    EXPECT_GT(mem.planned_bytes, 0u);
    EXPECT_LE(mem.live_bytes_max, mem.planned_bytes);
    // Three layers of values share a few buffers: far less than one buffer each.
    EXPECT_LT(mem.planned_bytes * 3, mem.unplanned_bytes);
    EXPECT_EQ(mem.arena_bytes, mem.planned_bytes);
  }
  EngineOptions o;
  o.memory_plan = false;
  Engine e(*m, pool, 16);
  e.set_options(o);
  const int32_t id = 1, p = 0;
  KVCache cache = e.make_cache(1);
  std::vector<float> logits(static_cast<size_t>(m->hparams().n_vocab));
  e.forward(cache, {&id, 1}, {&p, 1}, 1, logits.data());
  EXPECT_EQ(e.last_memory().arena_bytes, e.last_memory().unplanned_bytes);
}

}  // namespace
