#include "tandem/parallel/head_exchange.hpp"

#include <cstring>

namespace tandem::parallel {
namespace {
void grow(std::vector<float>& b, int64_t n) {
  if (b.size() < size_t(n)) b.resize(size_t(n));
}
void copy_floats(float* dst, const float* src, int64_t n) {
  if (n > 0) std::memcpy(dst, src, size_t(n) * sizeof(float));
}
}  // namespace

HeadExchange::HeadExchange(AttnShape shape, comm::Communicator& group)
    : shape_(shape),
      comm_(group),
      groups_(split_heads(shape.H, shape.G, group.size())),
      view_(head_view(groups_[size_t(group.rank())], shape.H, shape.G, shape.d, shape.scale,
                      shape.softcap)) {
  const size_t U = size_t(comm_.size());
  counts_.resize(U);
  first_.resize(U);
  sbytes_.resize(U);
  soff_.resize(U);
  rbytes_.resize(U);
  roff_.resize(U);
}

void HeadExchange::begin_step(int64_t m, const int32_t* pos) {
  const int U = comm_.size(), me = comm_.rank();
  std::fill(counts_.begin(), counts_.end(), 0);
  counts_[size_t(me)] = m;
  comm_.allreduce(counts_.data(), counts_.size(), comm::ReduceOp::Sum);
  n_ = 0;
  for (int i = 0; i < U; ++i) {
    first_[size_t(i)] = n_;
    rbytes_[size_t(i)] = size_t(counts_[size_t(i)]) * sizeof(int32_t);
    roff_[size_t(i)] = size_t(n_) * sizeof(int32_t);
    n_ += counts_[size_t(i)];
  }
  pos_.resize(size_t(n_));
  comm_.allgatherv(pos, rbytes_[size_t(me)], pos_.data(), rbytes_, roff_);
  const int64_t d = shape_.d;
  grow(q_, n_ * view_.q_heads * d);
  grow(out_, n_ * view_.q_heads * d);
  grow(k_, n_ * view_.kv_heads * d);
  grow(v_, n_ * view_.kv_heads * d);
}

void HeadExchange::to_heads(const float* q, const float* k, const float* v) {
  const int U = comm_.size(), me = comm_.rank();
  const int64_t d = shape_.d, m = counts_[size_t(me)], qd = shape_.q_dim(), kvd = shape_.kv_dim();
  // Send block for member j: q [m][nh_j*d], k [m][ng_j*d], v [m][ng_j*d].
  int64_t total = 0;
  for (int j = 0; j < U; ++j) {
    const HeadGroup& g = groups_[size_t(j)];
    soff_[size_t(j)] = size_t(total) * sizeof(float);
    const int64_t floats = m * (g.nh + 2 * g.ng) * d;
    sbytes_[size_t(j)] = size_t(floats) * sizeof(float);
    total += floats;
  }
  grow(send_, total);
  for (int j = 0; j < U; ++j) {
    const HeadGroup& g = groups_[size_t(j)];
    float* b = send_.data() + soff_[size_t(j)] / sizeof(float);
    const int64_t qw = g.nh * d, kw = g.ng * d;
    for (int64_t t = 0; t < m; ++t) {
      copy_floats(b + t * qw, q + t * qd + g.h0 * d, qw);
      copy_floats(b + m * qw + t * kw, k + t * kvd + g.g0 * d, kw);
      copy_floats(b + m * (qw + kw) + t * kw, v + t * kvd + g.g0 * d, kw);
    }
  }
  // Receive block from member i: the same for its m_i tokens and this member's heads.
  const int64_t qw = view_.q_heads * d, kw = view_.kv_heads * d;
  total = 0;
  for (int i = 0; i < U; ++i) {
    roff_[size_t(i)] = size_t(total) * sizeof(float);
    const int64_t floats = counts_[size_t(i)] * (qw + 2 * kw);
    rbytes_[size_t(i)] = size_t(floats) * sizeof(float);
    total += floats;
  }
  grow(recv_, total);
  comm_.alltoallv(send_.data(), sbytes_, soff_, recv_.data(), rbytes_, roff_);
  // Unpack: queries into the segment-major layout, K/V rows in token order.
  for (int i = 0; i < U; ++i) {
    const int64_t mi = counts_[size_t(i)], f = first_[size_t(i)];
    const float* b = recv_.data() + roff_[size_t(i)] / sizeof(float);
    for (const HeadSegment& s : view_.segs)
      for (int64_t t = 0; t < mi; ++t)
        copy_floats(q_.data() + (n_ * s.q0 + (f + t) * s.nq) * d, b + t * qw + s.q0 * d,
                    s.nq * d);
    copy_floats(k_.data() + f * kw, b + mi * qw, mi * kw);
    copy_floats(v_.data() + f * kw, b + mi * (qw + kw), mi * kw);
  }
}

void HeadExchange::to_tokens(float* out) {
  const int U = comm_.size(), me = comm_.rank();
  const int64_t d = shape_.d, m = counts_[size_t(me)], qd = shape_.q_dim();
  // Send block for member i: out [m_i][nh*d] of its tokens, this member's heads.
  const int64_t qw = view_.q_heads * d;
  int64_t total = 0;
  for (int i = 0; i < U; ++i) {
    soff_[size_t(i)] = size_t(total) * sizeof(float);
    sbytes_[size_t(i)] = size_t(counts_[size_t(i)] * qw) * sizeof(float);
    total += counts_[size_t(i)] * qw;
  }
  grow(send_, total);
  for (int i = 0; i < U; ++i) {
    const int64_t mi = counts_[size_t(i)], f = first_[size_t(i)];
    float* b = send_.data() + soff_[size_t(i)] / sizeof(float);
    for (const HeadSegment& s : view_.segs)
      for (int64_t t = 0; t < mi; ++t)
        copy_floats(b + t * qw + s.q0 * d, out_.data() + (n_ * s.q0 + (f + t) * s.nq) * d,
                    s.nq * d);
  }
  // Receive block from member j: [m][nh_j*d], heads [h0_j, h0_j + nh_j) of this member's tokens.
  total = 0;
  for (int j = 0; j < U; ++j) {
    const int64_t floats = m * groups_[size_t(j)].nh * d;
    roff_[size_t(j)] = size_t(total) * sizeof(float);
    rbytes_[size_t(j)] = size_t(floats) * sizeof(float);
    total += floats;
  }
  grow(recv_, total);
  comm_.alltoallv(send_.data(), sbytes_, soff_, recv_.data(), rbytes_, roff_);
  for (int j = 0; j < U; ++j) {
    const HeadGroup& g = groups_[size_t(j)];
    const float* b = recv_.data() + roff_[size_t(j)] / sizeof(float);
    for (int64_t t = 0; t < m; ++t)
      copy_floats(out + t * qd + g.h0 * d, b + t * g.nh * d, g.nh * d);
  }
}

}  // namespace tandem::parallel
