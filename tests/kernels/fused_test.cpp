// The fused matmul (kernels/fused.hpp) against the same ops run one by one: RMSNorm,
// one matmul per weight, RoPE, SwiGLU. Every ISA, every weight type, odd shapes, rows
// skipped at the front, 1 and 3 threads.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "kernel_test_util.hpp"
#include "tandem/core/error.hpp"
#include "tandem/kernels/fused.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::kernels {
namespace {

double max_rel(const float* a, const float* b, size_t n) {
  double amax = 1e-30, d = 0;
  for (size_t i = 0; i < n; ++i) {
    amax = std::max(amax, std::fabs(double(b[i])));
    d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
  }
  return d / amax;
}

// Set: the weights of the checks below get a packed copy (kernels::pack_weight) where
// the kernels in use have one, read by both the one-by-one and the fused runs.
bool g_pack = false;
struct PackedBufs {
  std::vector<test::PackedBuf> bufs;
  void add(test::TestWeight& tw) {
    if (!g_pack) return;
    bufs.emplace_back();
    test::attach_packed(tw.w, bufs.back());
  }
};

struct Case {
  int64_t m, row_from, cols, heads_q, heads_k, d, n_rot;
};

void check_qkv(DType t, const Case& c, ThreadPool& pool, std::mt19937& rng) {
  const int64_t Q = c.heads_q * c.d, K = c.heads_k * c.d, n = c.m - c.row_from;
  auto wq = test::make_weight(rng, t, Q, c.cols), wk = test::make_weight(rng, t, K, c.cols),
       wv = test::make_weight(rng, t, K, c.cols);
  PackedBufs pb;
  for (auto* w : {&wq, &wk, &wv}) pb.add(*w);
  const auto x = test::random_vec(rng, size_t(c.m * c.cols));
  const auto norm = test::random_vec(rng, size_t(c.cols), 0.5f, 1.5f);
  const auto bq = test::random_vec(rng, size_t(Q));
  std::vector<int32_t> pos(static_cast<size_t>(c.m));
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(3 * i + 1000);

  // One by one.
  std::vector<float> h(size_t(n * c.cols)), q(size_t(n * Q)), k(size_t(n * K)), v(size_t(n * K));
  rmsnorm(x.data() + c.row_from * c.cols, norm.data(), h.data(), n, c.cols, 1e-5f, pool);
  matmul(wq.w, h.data(), n, q.data(), pool, bq.data());
  matmul(wk.w, h.data(), n, k.data(), pool);
  matmul(wv.w, h.data(), n, v.data(), pool);
  RopeSpec rs;
  rs.n_rot = int(c.n_rot);
  rope(q.data(), n, int(c.heads_q), int(c.d), rs, pos.data() + c.row_from, pool);
  rope(k.data(), n, int(c.heads_k), int(c.d), rs, pos.data() + c.row_from, pool);

  // Fused.
  RopeTable rt;
  rt.build(pos.data(), c.m, rs);
  std::vector<float> fq(q.size(), -7.0f), fk(k.size(), -7.0f), fv(v.size(), -7.0f);
  FusedMatmul f;
  f.norm_w = norm.data();
  f.eps = 1e-5f;
  f.rope = &rt;
  f.outs.push_back({wq.w, fq.data(), bq.data(), int(c.d)});
  f.outs.push_back({wk.w, fk.data(), nullptr, int(c.d)});
  f.outs.push_back({wv.w, fv.data(), nullptr, 0});
  matmul_fused(f, x.data() + c.row_from * c.cols, c.row_from, c.m, pool);
  EXPECT_LE(max_rel(fq.data(), q.data(), q.size()), 1e-6);
  EXPECT_LE(max_rel(fk.data(), k.data(), k.size()), 1e-6);
  EXPECT_LE(max_rel(fv.data(), v.data(), v.size()), 1e-6);
}

void check_glu(DType t, int64_t m, int64_t row_from, int64_t cols, int64_t F, ThreadPool& pool,
               std::mt19937& rng) {
  const int64_t n = m - row_from;
  auto wg = test::make_weight(rng, t, F, cols), wu = test::make_weight(rng, t, F, cols);
  PackedBufs pb;
  for (auto* w : {&wg, &wu}) pb.add(*w);
  const auto x = test::random_vec(rng, size_t(m * cols));
  std::vector<float> g(size_t(n * F)), u(size_t(n * F)), ref(size_t(n * F));
  matmul(wg.w, x.data() + row_from * cols, n, g.data(), pool);
  matmul(wu.w, x.data() + row_from * cols, n, u.data(), pool);
  swiglu(g.data(), u.data(), ref.data(), n * F);
  std::vector<float> out(ref.size(), -7.0f);
  FusedMatmul f;
  f.glu = true;
  f.outs.push_back({wg.w, out.data(), nullptr, 0});
  f.outs.push_back({wu.w, nullptr, nullptr, 0});
  matmul_fused(f, x.data() + row_from * cols, row_from, m, pool);
  EXPECT_LE(max_rel(out.data(), ref.data(), ref.size()), 1e-6);
}

TEST(FusedMatmul, EqualsOpsOneByOne) {
  ThreadPool p1(1), p3(3);
  const Case cases[] = {{1, 0, 64, 4, 2, 16, 16},   {7, 3, 96, 3, 1, 32, 16},
                        {13, 0, 128, 6, 3, 8, 8},   {33, 32, 64, 2, 2, 64, 64},
                        {70, 5, 256, 8, 2, 32, 32}, {5, 0, 32, 1, 1, 34, 10}};
  test::for_each_isa([&](const std::string&) {
    for (int mode : {0, 1, 2}) {  // int8 activations, the same with packed weights, f32
      const bool int8 = mode < 2;
      detail::set_int8_activations(int8);
      g_pack = mode == 1;
      for (DType t : test::all_weight_types()) {
        if (g_pack && !test::has_packed(t)) continue;
        SCOPED_TRACE(std::string(dtype_name(t)) + (int8 ? " int8" : " f32") +
                     (g_pack ? " packed" : ""));
        std::mt19937 rng(5);
        for (ThreadPool* pool : {&p1, &p3}) {
          for (Case c : cases) {
            c.cols = test::block_cols(t, c.cols);  // as many blocks of t
            check_qkv(t, c, *pool, rng);
          }
          check_glu(t, 1, 0, test::block_cols(t, 64), 96, *pool, rng);
          check_glu(t, 9, 4, test::block_cols(t, 128), 200, *pool, rng);
          check_glu(t, 40, 0, test::block_cols(t, 64), 72, *pool, rng);
        }
      }
    }
    detail::set_int8_activations(true);
    g_pack = false;
  });
}

TEST(FusedMatmul, RejectsBadSpecs) {
  ThreadPool pool(1);
  std::mt19937 rng(1);
  auto a = test::make_weight(rng, DType::F32, 8, 32), b = test::make_weight(rng, DType::F16, 8, 32);
  std::vector<float> x(32), y(8), z(8);
  FusedMatmul mixed;
  mixed.outs.push_back({a.w, y.data(), nullptr, 0});
  mixed.outs.push_back({b.w, z.data(), nullptr, 0});
  EXPECT_THROW(matmul_fused(mixed, x.data(), 0, 1, pool), Error);
  FusedMatmul rope_without_table;
  rope_without_table.outs.push_back({a.w, y.data(), nullptr, 8});
  EXPECT_THROW(matmul_fused(rope_without_table, x.data(), 0, 1, pool), Error);
}

}  // namespace
}  // namespace tandem::kernels
