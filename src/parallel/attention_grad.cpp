#include "tandem/parallel/attention_grad.hpp"

#include <algorithm>

#include "tandem/core/error.hpp"
#include "tandem/kernels/backward.hpp"

namespace tandem::parallel {
namespace {

// The whole sequence on this rank: one kernel call each way.
class LocalAttentionGrad final : public AttentionGrad {
 public:
  using AttentionGrad::AttentionGrad;
  std::string_view name() const override { return "local"; }

  void forward(const AttnGradStep& s) override {
    kernels::AttentionArgs a = args(s);
    a.out = s.out;
    a.lse = s.lse;
    kernels::attention(a, pool_);
  }

  void backward(const AttnGradStep& s, const float* dout, float* dq, float* dk,
                float* dv) override {
    std::fill(dq, dq + s.n * shape_.q_dim(), 0.0f);
    std::fill(dk, dk + s.n * shape_.kv_dim(), 0.0f);
    std::fill(dv, dv + s.n * shape_.kv_dim(), 0.0f);
    kernels::AttentionBackwardArgs b;
    b.fwd = args(s);
    b.fwd.out = s.out;
    b.fwd.lse = s.lse;
    b.dout = dout;
    b.dq = dq;
    b.dk = dk;
    b.dv = dv;
    kernels::attention_backward(b, pool_);
  }

 private:
  kernels::AttentionArgs args(const AttnGradStep& s) const {
    TD_CHECK(shape_.softcap == 0.0f);
    kernels::AttentionArgs a;
    a.q = s.q;
    a.q_pos = s.pos;
    a.n_q = s.n;
    a.k = s.k;
    a.v = s.v;
    a.kv_pos = s.pos;
    a.n_kv = s.n;
    a.kv_stride = shape_.kv_dim();
    a.H = shape_.H;
    a.G = shape_.G;
    a.d = shape_.d;
    a.scale = shape_.scale;
    a.causal = true;
    return a;
  }
};

}  // namespace

size_t WorkspaceModel::bytes(int64_t n) const {
  if (points.empty()) return 0;
  if (points.size() == 1 || n <= points.front().first) return size_t(points.front().second);
  size_t i = 1;
  while (i + 1 < points.size() && points[i].first < n) ++i;
  const auto [x0, y0] = points[i - 1];
  const auto [x1, y1] = points[i];
  const double slope = std::max(0.0, (y1 - y0) / double(x1 - x0));
  return size_t(std::max(y0, y0 + slope * double(n - x0)));
}

WorkspaceModel probe_workspace(AttentionGrad& attn, int ranks, int rank, Placement placement,
                               int64_t max_tokens) {
  const AttnShape& sh = attn.shape();
  auto probe = [&](int64_t per_rank) {
    std::vector<int32_t> pos;
    for (const int64_t i : shard_indices(per_rank * ranks, ranks, rank, placement))
      pos.push_back(int32_t(i));
    const int64_t m = int64_t(pos.size());
    std::vector<float> q(size_t(m * sh.q_dim())), k(size_t(m * sh.kv_dim())), v(k.size()),
        out(q.size()), lse(size_t(m * sh.H)), dout(q.size()), dq(q.size()), dk(k.size()), dv(k.size());
    const AttnGradStep s{m, pos.data(), q.data(), k.data(), v.data(), out.data(), lse.data()};
    attn.forward(s);
    attn.backward(s, dout.data(), dq.data(), dk.data(), dv.data());
    return double(attn.held_bytes());
  };
  WorkspaceModel w;
  for (int64_t t = 64; t <= std::max<int64_t>(max_tokens, 128); t *= 2) w.points.emplace_back(t, probe(t));
  return w;
}

std::unique_ptr<AttentionGrad> make_local_attention_grad(AttnShape shape,
                                                         kernels::ThreadPool& pool) {
  return std::make_unique<LocalAttentionGrad>(shape, pool);
}

}  // namespace tandem::parallel
