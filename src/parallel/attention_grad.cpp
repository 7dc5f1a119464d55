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

std::unique_ptr<AttentionGrad> make_local_attention_grad(AttnShape shape,
                                                         kernels::ThreadPool& pool) {
  return std::make_unique<LocalAttentionGrad>(shape, pool);
}

}  // namespace tandem::parallel
