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
  return size_t(at_probe + per_token * double(std::max<int64_t>(0, n - probe_tokens)));
}

WorkspaceModel probe_workspace(AttentionGrad& attn, int ranks, int rank, Placement placement,
                               int64_t probe_tokens) {
  const AttnShape& sh = attn.shape();
  auto probe = [&](int64_t per_rank) {
    std::vector<int32_t> pos;
    for (const int64_t i : shard_indices(per_rank * ranks, ranks, rank, placement))
      pos.push_back(int32_t(i));
    const int64_t m = int64_t(pos.size());
    std::vector<float> q(size_t(m * sh.q_dim())), k(size_t(m * sh.kv_dim())), v(k.size()),
        out(q.size()), lse(size_t(m * sh.H)), dout(q.size()), dq(q.size()), dk(k.size()), dv(k.size());
    AttnGradStep s;
    s.n = m;
    s.pos = pos.data();
    s.q = q.data();
    s.k = k.data();
    s.v = v.data();
    s.out = out.data();
    s.lse = lse.data();
    attn.forward(s);
    attn.backward(s, dout.data(), dq.data(), dk.data(), dv.data());
    return double(attn.held_bytes());
  };
  const double h1 = probe(probe_tokens), h2 = probe(2 * probe_tokens);
  WorkspaceModel w;
  w.probe_tokens = 2 * probe_tokens;
  w.at_probe = h2;
  w.per_token = std::max(0.0, h2 - h1) / double(probe_tokens);
  return w;
}

std::unique_ptr<AttentionGrad> make_local_attention_grad(AttnShape shape,
                                                         kernels::ThreadPool& pool) {
  return std::make_unique<LocalAttentionGrad>(shape, pool);
}

}  // namespace tandem::parallel
