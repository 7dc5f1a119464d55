// Attention over keys held in pages (a paged KV cache's layout): the optimized kernels
// read pages directly (f32 rows in place, Q8_0 rows dequantized per block of keys);
// they must equal the scalar reference over the same keys gathered into one run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "attention_problem.hpp"
#include "tandem/core/quant_rows.hpp"
#include "tandem/kernels/attention_plain.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem::kernels {
namespace {

using test::make_problem;
using test::Problem;

// The keys of p scattered over pages of `tokens` keys, pool slots in shuffled order,
// rows stored as `type` with `pad` spare bytes per row.
struct Paged {
  std::vector<std::byte> pool_k, pool_v;
  std::vector<int32_t> pool_pos;
  std::vector<KvPage> pages;
  KvPages view;
};

Paged page_out(const Problem& p, int64_t tokens, DType type, size_t pad, std::mt19937& rng) {
  const int64_t kvd = int64_t(p.G) * p.d;
  const int64_t n_pages = (p.n_kv + tokens - 1) / tokens;
  const size_t rb = row_bytes(type, kvd) + pad;
  Paged g;
  g.pool_k.resize(size_t(n_pages * tokens) * rb + 1);
  g.pool_v.resize(g.pool_k.size());
  g.pool_pos.assign(size_t(n_pages * tokens), -777);
  std::vector<int64_t> slot(static_cast<size_t>(n_pages));
  for (int64_t i = 0; i < n_pages; ++i) slot[size_t(i)] = i;
  std::shuffle(slot.begin(), slot.end(), rng);
  for (int64_t j = 0; j < p.n_kv; ++j) {
    const int64_t s = slot[size_t(j / tokens)] * tokens + j % tokens;
    tandem::quantize_row(type, &p.k[size_t(j * p.kv_stride)], &g.pool_k[size_t(s) * rb], kvd);
    tandem::quantize_row(type, &p.v[size_t(j * p.kv_stride)], &g.pool_v[size_t(s) * rb], kvd);
    g.pool_pos[size_t(s)] = p.kv_pos[size_t(j)];
  }
  for (int64_t i = 0; i < n_pages; ++i) {
    const size_t first = size_t(slot[size_t(i)] * tokens);
    g.pages.push_back({&g.pool_k[first * rb], &g.pool_v[first * rb], &g.pool_pos[first]});
  }
  g.view.tokens = tokens;
  g.view.page = g.pages.data();
  g.view.type = type;
  g.view.row_bytes = rb;
  return g;
}

AttentionArgs paged_args(const Problem& p, const Paged& g, float* out, float* lse) {
  AttentionArgs a = p.args(out, lse);
  a.k = a.v = nullptr;  // must not be read
  a.kv_pos = nullptr;
  a.kv_stride = 0;
  a.pages = g.view;
  return a;
}

void check_paged(const Problem& p, const Paged& g, ThreadPool& pool, const std::string& what) {
  const size_t n_out = size_t(p.n_q * p.H * p.d), n_lse = size_t(p.n_q * p.H);
  std::vector<float> want(n_out), lse_want(n_lse);
  ref::attention(paged_args(p, g, want.data(), lse_want.data()));
  auto run = [&](void (*attend)(const AttentionArgs&, ThreadPool&), const char* name) {
    std::vector<float> got(n_out, 99.0f), lse_got(n_lse, 99.0f);
    attend(paged_args(p, g, got.data(), lse_got.data()), pool);
    for (size_t i = 0; i < n_out; ++i)
      ASSERT_NEAR(got[i], want[i], test::kOutTol) << what << " " << name << " out " << i;
    for (size_t i = 0; i < n_lse; ++i) {
      if (std::isinf(lse_want[i])) {
        ASSERT_EQ(lse_got[i], test::kNegInf) << what << " " << name << " lse " << i;
      } else {
        ASSERT_NEAR(lse_got[i], lse_want[i], test::kLseTol * std::max(1.0f, std::fabs(lse_want[i])))
            << what << " " << name << " lse " << i;
      }
    }
  };
  run(attention, "flash");
  run(attention_materialized, "materialized");
}

TEST(AttentionPaged, MatchesReferenceOverTheGatheredKeys) {
  ThreadPool p1(1), p3(3);
  const bool saved = detail::flash_attention();
  struct Case {
    int H, G, d;
    int64_t n_q, n_kv;
    int32_t shift;
  };
  const std::vector<Case> cases{{4, 4, 32, 1, 1, 0},      {8, 2, 64, 1, 1000, 0},
                                {12, 4, 64, 2, 700, -300}, {6, 3, 32, 40, 40, 0},
                                {8, 2, 64, 130, 300, 0},   {4, 1, 96, 33, 250, -5}};
  for (bool flash : {true, false}) {
    detail::set_flash_attention(flash);
    test::for_each_isa([&](const std::string& isa) {
      std::mt19937 rng(41);
      int k = 0;
      for (const Case& c : cases)
        for (int64_t tokens : {1, 7, 16, 64, 100})
          for (DType type : {DType::F32, DType::Q8_0}) {
            ThreadPool& pool = (k++ % 2) ? p3 : p1;
            const Problem p = make_problem(rng, c.H, c.G, c.d, c.n_q, c.n_kv, true, 0, 11,
                                           c.shift, 1, k % 3 == 0);
            const Paged g = page_out(p, tokens, type, k % 2 ? 0 : 64, rng);
            check_paged(p, g, pool,
                        isa + (flash ? " flash" : " units") + " H" + std::to_string(c.H) +
                            " G" + std::to_string(c.G) + " nq" + std::to_string(c.n_q) +
                            " nkv" + std::to_string(c.n_kv) + " page " +
                            std::to_string(tokens) + " " + std::string(dtype_name(type)));
            if (HasFatalFailure()) return;
          }
    });
    if (HasFatalFailure()) break;
  }
  detail::set_flash_attention(saved);
}

// F32 pages give what the contiguous keys give (up to summation order), and Q8_0 pages
// really are quantized: close to the f32 result but not equal to it.
TEST(AttentionPaged, F32PagesEqualContiguousAndQ8PagesAreClose) {
  ThreadPool pool(2);
  std::mt19937 rng(5);
  const Problem p = make_problem(rng, 8, 2, 64, 3, 500, true, 0, 0);
  const size_t n_out = size_t(p.n_q * p.H * p.d);
  std::vector<float> flat(n_out), f32(n_out), q8(n_out);
  attention(p.args(flat.data(), nullptr), pool);
  const Paged gf = page_out(p, 16, DType::F32, 0, rng);
  attention(paged_args(p, gf, f32.data(), nullptr), pool);
  const Paged gq = page_out(p, 16, DType::Q8_0, 0, rng);
  attention(paged_args(p, gq, q8.data(), nullptr), pool);
  double max_f32 = 0, max_q8 = 0;
  for (size_t i = 0; i < n_out; ++i) {
    max_f32 = std::max(max_f32, double(std::fabs(f32[i] - flat[i])));
    max_q8 = std::max(max_q8, double(std::fabs(q8[i] - flat[i])));
  }
  EXPECT_LT(max_f32, 1e-5);
  EXPECT_GT(max_q8, 1e-6);  // 8-bit rows change the result
  EXPECT_LT(max_q8, 2e-2);  // ... by about the rows' quantization step
}

}  // namespace
}  // namespace tandem::kernels
