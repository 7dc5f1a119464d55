// ref::attention_backward (backward_reference.hpp): the plain scalar backward of softmax
// attention, in double, one query and head at a time over every key it sees.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention_backward.hpp"
#include "tandem/core/error.hpp"
#include "tandem/kernels/backward_reference.hpp"

namespace tandem::kernels::ref {

// For query i, head h (KV head g = h / (H/G)) and each key j it sees in this call:
//   p = exp(scale*q.k - lse), dv_j += p*dout, dp = dout.v_j, ds = p*(dp - delta),
//   dq += scale*ds*k_j, dk_j += scale*ds*q,
// with delta = dout.out (or the caller's). dk and dv of the call are summed in double
// over every query and head before they are added to the caller's floats.
void attention_backward(const AttentionBackwardArgs& b) {
  const AttentionArgs& a = b.fwd;
  detail::check_attention_backward(b);
  if (a.n_q == 0 || a.n_kv == 0) return;
  const int d = a.d, group = a.H / a.G;
  const int64_t hd = int64_t(a.H) * d, kvd = int64_t(a.G) * d;
  std::vector<double> dk(size_t(a.n_kv * kvd), 0.0), dv(dk.size(), 0.0);
  std::vector<double> dq(static_cast<size_t>(d));
  for (int64_t i = 0; i < a.n_q; ++i) {
    for (int h = 0; h < a.H; ++h) {
      const float lse = a.lse[i * a.H + h];
      if (std::isinf(lse)) continue;  // -inf: the query sees no key at all
      const float* q = a.q + i * hd + int64_t(h) * d;
      const float* dout = b.dout + i * hd + int64_t(h) * d;
      double delta = 0.0;
      if (b.delta) {
        delta = b.delta[i * a.H + h];
      } else {
        const float* out = a.out + i * hd + int64_t(h) * d;
        for (int c = 0; c < d; ++c) delta += double(dout[c]) * out[c];
      }
      const int64_t goff = int64_t(h / group) * d;
      std::fill(dq.begin(), dq.end(), 0.0);
      for (int64_t j = 0; j < a.n_kv; ++j) {
        if (a.causal) {
          const int64_t behind = int64_t(a.q_pos[i]) - a.kv_pos[j];
          if (behind < 0 || (a.window > 0 && behind >= a.window)) continue;
        }
        const float* k = a.k + j * a.kv_stride + goff;
        const float* v = a.v + j * a.kv_stride + goff;
        double s = 0.0, dp = 0.0;
        for (int c = 0; c < d; ++c) {
          s += double(q[c]) * k[c];
          dp += double(dout[c]) * v[c];
        }
        const double p = std::exp(s * a.scale - lse);
        const double ds = p * (dp - delta) * a.scale;
        double* dkj = &dk[size_t(j * kvd + goff)];
        double* dvj = &dv[size_t(j * kvd + goff)];
        for (int c = 0; c < d; ++c) {
          dvj[c] += p * dout[c];
          dkj[c] += ds * q[c];
          dq[size_t(c)] += ds * k[c];
        }
      }
      float* dqi = b.dq + i * hd + int64_t(h) * d;
      for (int c = 0; c < d; ++c) dqi[c] = float(dqi[c] + dq[size_t(c)]);
    }
  }
  for (int64_t j = 0; j < a.n_kv; ++j)
    for (int64_t e = 0; e < kvd; ++e) {
      float& k = b.dk[j * a.kv_stride + e];
      float& v = b.dv[j * a.kv_stride + e];
      k = float(k + dk[size_t(j * kvd + e)]);
      v = float(v + dv[size_t(j * kvd + e)]);
    }
}

}  // namespace tandem::kernels::ref
