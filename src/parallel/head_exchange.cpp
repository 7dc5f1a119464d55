#include "tandem/parallel/head_exchange.hpp"

#include <algorithm>
#include <cstring>

#include "tandem/core/error.hpp"
#include "tandem/core/held_bytes.hpp"

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

size_t HeadExchange::held_bytes() const {
  return held_bytes_of(q_, k_, v_, out_, send_, recv_, pos_);
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
  const int d = shape_.d;
  const Moved qs[] = {{q, q_.data(), d}};
  const Moved kvs[] = {{k, k_.data(), d}, {v, v_.data(), d}};
  to_heads(qs, kvs);
}

void HeadExchange::to_tokens(float* out) {
  const Moved qs[] = {{out_.data(), out, shape_.d}};
  to_tokens(qs, {});
}

int64_t HeadExchange::head_floats(std::span<const Moved> qs, std::span<const Moved> kvs) const {
  int64_t f = 0;
  for (const Moved& x : qs) f += int64_t(view_.q_heads) * x.w;
  for (const Moved& x : kvs) f += int64_t(view_.kv_heads) * x.w;
  return f;
}

int64_t HeadExchange::token_floats(int j, std::span<const Moved> qs,
                                   std::span<const Moved> kvs) const {
  const HeadGroup& g = groups_[size_t(j)];
  int64_t f = 0;
  for (const Moved& x : qs) f += int64_t(g.nh) * x.w;
  for (const Moved& x : kvs) f += int64_t(g.ng) * x.w;
  return f;
}

void HeadExchange::to_heads(std::span<const Moved> qs, std::span<const Moved> kvs) {
  const int U = comm_.size(), me = comm_.rank();
  const int64_t m = counts_[size_t(me)], H = shape_.H, G = shape_.G;
  for (const Moved& x : qs) TD_CHECK(x.w >= 1);
  for (const Moved& x : kvs) TD_CHECK(x.w >= 1);
  // Send block for member j: each tensor of qs as [m][nh_j*w] (its query heads), then
  // each of kvs as [m][ng_j*w] (its KV heads).
  int64_t total = 0;
  for (int j = 0; j < U; ++j) {
    const int64_t floats = m * token_floats(j, qs, kvs);
    soff_[size_t(j)] = size_t(total) * sizeof(float);
    sbytes_[size_t(j)] = size_t(floats) * sizeof(float);
    total += floats;
  }
  grow(send_, total);
  for (int j = 0; j < U; ++j) {
    const HeadGroup& g = groups_[size_t(j)];
    float* b = send_.data() + soff_[size_t(j)] / sizeof(float);
    for (const Moved& x : qs) {
      const int64_t w = x.w, rw = g.nh * w;
      for (int64_t t = 0; t < m; ++t) copy_floats(b + t * rw, x.src + t * H * w + g.h0 * w, rw);
      b += m * rw;
    }
    for (const Moved& x : kvs) {
      const int64_t w = x.w, rw = g.ng * w;
      for (int64_t t = 0; t < m; ++t) copy_floats(b + t * rw, x.src + t * G * w + g.g0 * w, rw);
      b += m * rw;
    }
  }
  // Receive block from member i: the same for its m_i tokens and this member's heads.
  const int64_t hf = head_floats(qs, kvs);
  total = 0;
  for (int i = 0; i < U; ++i) {
    const int64_t floats = counts_[size_t(i)] * hf;
    roff_[size_t(i)] = size_t(total) * sizeof(float);
    rbytes_[size_t(i)] = size_t(floats) * sizeof(float);
    total += floats;
  }
  grow(recv_, total);
  comm_.alltoallv(send_.data(), sbytes_, soff_, recv_.data(), rbytes_, roff_);
  // Unpack: query-head tensors into the segment-major layout, KV rows in token order.
  for (int i = 0; i < U; ++i) {
    const int64_t mi = counts_[size_t(i)], f = first_[size_t(i)];
    const float* b = recv_.data() + roff_[size_t(i)] / sizeof(float);
    for (const Moved& x : qs) {
      const int64_t w = x.w, rw = view_.q_heads * w;
      for (const HeadSegment& s : view_.segs)
        for (int64_t t = 0; t < mi; ++t)
          copy_floats(x.dst + (n_ * s.q0 + (f + t) * s.nq) * w, b + t * rw + s.q0 * w, s.nq * w);
      b += mi * rw;
    }
    for (const Moved& x : kvs) {
      const int64_t rw = view_.kv_heads * int64_t(x.w);
      copy_floats(x.dst + f * rw, b, mi * rw);
      b += mi * rw;
    }
  }
}

void HeadExchange::to_tokens(std::span<const Moved> qs, std::span<const Moved> kvs) {
  const int U = comm_.size(), me = comm_.rank();
  const int64_t m = counts_[size_t(me)], H = shape_.H, G = shape_.G;
  for (const Moved& x : qs) TD_CHECK(x.w >= 1);
  for (const Moved& x : kvs) TD_CHECK(x.w >= 1);
  // Send block for member i: the rows of its m_i tokens, this member's heads, token-major:
  // each tensor of qs as [m_i][nh*w], then each of kvs as [m_i][ng*w].
  const int64_t hf = head_floats(qs, kvs);
  int64_t total = 0;
  for (int i = 0; i < U; ++i) {
    const int64_t floats = counts_[size_t(i)] * hf;
    soff_[size_t(i)] = size_t(total) * sizeof(float);
    sbytes_[size_t(i)] = size_t(floats) * sizeof(float);
    total += floats;
  }
  grow(send_, total);
  for (int i = 0; i < U; ++i) {
    const int64_t mi = counts_[size_t(i)], f = first_[size_t(i)];
    float* b = send_.data() + soff_[size_t(i)] / sizeof(float);
    for (const Moved& x : qs) {
      const int64_t w = x.w, rw = view_.q_heads * w;
      for (const HeadSegment& s : view_.segs)
        for (int64_t t = 0; t < mi; ++t)
          copy_floats(b + t * rw + s.q0 * w, x.src + (n_ * s.q0 + (f + t) * s.nq) * w, s.nq * w);
      b += mi * rw;
    }
    for (const Moved& x : kvs) {
      const int64_t rw = view_.kv_heads * int64_t(x.w);
      copy_floats(b, x.src + f * rw, mi * rw);
      b += mi * rw;
    }
  }
  // Receive block from member j: this member's m tokens, member j's heads.
  total = 0;
  for (int j = 0; j < U; ++j) {
    const int64_t floats = m * token_floats(j, qs, kvs);
    roff_[size_t(j)] = size_t(total) * sizeof(float);
    rbytes_[size_t(j)] = size_t(floats) * sizeof(float);
    total += floats;
  }
  grow(recv_, total);
  comm_.alltoallv(send_.data(), sbytes_, soff_, recv_.data(), rbytes_, roff_);
  // Every KV head is read by some query head, so every element of a KV-head tensor
  // receives at least one term.
  for (const Moved& x : kvs) std::fill(x.dst, x.dst + m * G * x.w, 0.0f);
  for (int j = 0; j < U; ++j) {
    const HeadGroup& g = groups_[size_t(j)];
    const float* b = recv_.data() + roff_[size_t(j)] / sizeof(float);
    for (const Moved& x : qs) {
      const int64_t w = x.w, rw = g.nh * w;
      for (int64_t t = 0; t < m; ++t) copy_floats(x.dst + t * H * w + g.h0 * w, b + t * rw, rw);
      b += m * rw;
    }
    for (const Moved& x : kvs) {
      const int64_t w = x.w, rw = g.ng * w;
      for (int64_t t = 0; t < m; ++t) {
        float* dst = x.dst + t * G * w + g.g0 * w;
        const float* src = b + t * rw;
        for (int64_t e = 0; e < rw; ++e) dst[e] += src[e];
      }
      b += m * rw;
    }
  }
}

}  // namespace tandem::parallel
