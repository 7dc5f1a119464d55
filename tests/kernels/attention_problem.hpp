#pragma once
// One attention problem (inputs owning their buffers) and the check of an optimized
// attention kernel against the scalar reference, shared by the attention tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/reference.hpp"

namespace tandem::kernels::test {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Tolerances: outputs are convex mixes of values in [-1, 1] and lse is O(log n_kv);
// f32 accumulation against the double reference stays far below these.
constexpr double kOutTol = 1e-5;
constexpr double kLseTol = 1e-5;

struct Problem {
  int H, G, d;
  int64_t n_q, n_kv, kv_stride;
  bool causal;
  std::vector<float> q, k, v;
  std::vector<int32_t> q_pos, kv_pos;
  int32_t window = 0;    // sliding window (AttentionArgs::window)
  float softcap = 0.0f;  // score soft-capping (AttentionArgs::softcap)

  AttentionArgs args(float* out, float* lse) const {
    AttentionArgs a;
    a.q = q.data();
    a.q_pos = q_pos.data();
    a.n_q = n_q;
    a.k = k.data();
    a.v = v.data();
    a.kv_pos = kv_pos.data();
    a.n_kv = n_kv;
    a.kv_stride = kv_stride;
    a.H = H;
    a.G = G;
    a.d = d;
    a.scale = 1.0f / std::sqrt(float(d));
    a.causal = causal;
    a.window = window;
    a.softcap = softcap;
    a.out = out;
    a.lse = lse;
    return a;
  }
};

// Keys at positions first_pos + j * pos_step (gaps when pos_step > 1); the queries sit
// at the positions of the last n_q keys, shifted by q_shift (negative: some see no key).
// shuffled: the key rows are stored out of position order.
inline Problem make_problem(std::mt19937& rng, int H, int G, int d, int64_t n_q, int64_t n_kv,
                     bool causal, int64_t stride_pad, int32_t first_pos, int32_t q_shift = 0,
                     int32_t pos_step = 1, bool shuffled = false) {
  Problem p{H, G, d, n_q, n_kv, int64_t(G) * d + stride_pad, causal, {}, {}, {}, {}, {}, 0, 0.0f};
  p.q = random_vec(rng, size_t(n_q * H * d), -2.0f, 2.0f);
  p.k = random_vec(rng, size_t(std::max<int64_t>(n_kv, 1) * p.kv_stride), -2.0f, 2.0f);
  p.v = random_vec(rng, p.k.size());
  for (int64_t j = 0; j < n_kv; ++j) p.kv_pos.push_back(first_pos + int32_t(j) * pos_step);
  for (int64_t i = 0; i < n_q; ++i)
    p.q_pos.push_back(first_pos + int32_t(n_kv - n_q + i) * pos_step + q_shift);
  if (shuffled && n_kv > 1) {
    std::vector<int64_t> perm(static_cast<size_t>(n_kv));
    for (int64_t j = 0; j < n_kv; ++j) perm[size_t(j)] = j;
    std::shuffle(perm.begin(), perm.end(), rng);
    Problem s = p;
    for (int64_t j = 0; j < n_kv; ++j) {
      const int64_t from = perm[size_t(j)];
      s.kv_pos[size_t(j)] = p.kv_pos[size_t(from)];
      std::copy_n(p.k.begin() + from * p.kv_stride, p.kv_stride, s.k.begin() + j * p.kv_stride);
      std::copy_n(p.v.begin() + from * p.kv_stride, p.kv_stride, s.v.begin() + j * p.kv_stride);
    }
    p = s;
  }
  if (p.kv_pos.empty()) p.kv_pos.push_back(0);  // keep data() valid
  return p;
}

// Runs `attend` (an optimized attention) against the scalar reference.
inline void check_attention(const Problem& p, void (*attend)(const AttentionArgs&, ThreadPool&),
                            ThreadPool& pool, const std::string& what) {
  const size_t n_out = size_t(p.n_q * p.H * p.d), n_lse = size_t(p.n_q * p.H);
  std::vector<float> got(n_out, 99.0f), want(n_out), lse_got(n_lse, 99.0f), lse_want(n_lse);
  attend(p.args(got.data(), lse_got.data()), pool);
  ref::attention(p.args(want.data(), lse_want.data()));
  for (size_t i = 0; i < n_out; ++i) ASSERT_NEAR(got[i], want[i], kOutTol) << what << " out " << i;
  for (size_t i = 0; i < n_lse; ++i) {
    if (std::isinf(lse_want[i])) {
      ASSERT_EQ(lse_got[i], kNegInf) << what << " lse " << i;
    } else {
      ASSERT_NEAR(lse_got[i], lse_want[i], kLseTol * std::max(1.0f, std::fabs(lse_want[i])))
          << what << " lse " << i;
    }
  }
  // without lse the output is the same
  std::vector<float> got2(n_out, 99.0f);
  attend(p.args(got2.data(), nullptr), pool);
  ASSERT_EQ(got2, got) << what;
}

}  // namespace tandem::kernels::test
