// Generic collectives over point-to-point messages: the default of every backend that
// has no native form. Each uses one deadline (timeout()) for the whole operation.
//   alltoallv   all receives and sends posted at once, peers in pairwise order
//   allgatherv  direct: each rank sends its block to every other rank
//   allreduce   ring: reduce-scatter then allgather, 2(P-1) steps, 2(P-1)/P * n sent;
//               each chunk is reduced once, so every rank gets bit-identical results
//   broadcast   the root sends to every rank
//   barrier     an allreduce of one int64
#include <algorithm>
#include <cstring>
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/core/error.hpp"

namespace tandem::comm {
namespace {

template <typename T>
void reduce_into(T* acc, const T* in, size_t n, ReduceOp op) {
  if (op == ReduceOp::Sum) {
    for (size_t i = 0; i < n; ++i) acc[i] += in[i];
  } else {
    for (size_t i = 0; i < n; ++i) acc[i] = std::max(acc[i], in[i]);
  }
}

void reduce_typed(void* acc, const void* in, size_t n, ElemType type, ReduceOp op) {
  switch (type) {
    case ElemType::F32:
      reduce_into(static_cast<float*>(acc), static_cast<const float*>(in), n, op);
      break;
    case ElemType::F64:
      reduce_into(static_cast<double*>(acc), static_cast<const double*>(in), n, op);
      break;
    case ElemType::I64:
      reduce_into(static_cast<int64_t*>(acc), static_cast<const int64_t*>(in), n, op);
      break;
  }
}

}  // namespace

void Communicator::do_alltoallv(const std::byte* send, std::span<const size_t> send_bytes,
                                std::span<const size_t> send_offsets, std::byte* recv,
                                std::span<const size_t> recv_bytes,
                                std::span<const size_t> recv_offsets) {
  const int P = size(), r = rank();
  std::vector<std::unique_ptr<Request>> reqs;
  reqs.reserve(2 * static_cast<size_t>(P));
  for (int s = 1; s < P; ++s) {
    const int src = (r - s + P) % P;
    reqs.push_back(post_recv(recv + recv_offsets[src], recv_bytes[src], src, kTagAlltoallv));
  }
  for (int s = 1; s < P; ++s) {
    const int dst = (r + s) % P;
    reqs.push_back(post_send(send + send_offsets[dst], send_bytes[dst], dst, kTagAlltoallv));
  }
  if (send_bytes[r]) std::memmove(recv + recv_offsets[r], send + send_offsets[r], send_bytes[r]);
  wait_all(reqs);
}

void Communicator::do_allgatherv(const std::byte* send, size_t bytes, std::byte* recv,
                                 std::span<const size_t> recv_bytes,
                                 std::span<const size_t> recv_offsets) {
  const int P = size(), r = rank();
  std::vector<std::unique_ptr<Request>> reqs;
  reqs.reserve(2 * static_cast<size_t>(P));
  for (int s = 1; s < P; ++s) {
    const int src = (r - s + P) % P;
    reqs.push_back(post_recv(recv + recv_offsets[src], recv_bytes[src], src, kTagAllgatherv));
  }
  for (int s = 1; s < P; ++s) {
    reqs.push_back(post_send(send, bytes, (r + s) % P, kTagAllgatherv));
  }
  std::byte* mine = recv + recv_offsets[r];
  if (bytes && mine != send) std::memmove(mine, send, bytes);
  wait_all(reqs);
}

void Communicator::do_allreduce(void* data, size_t n, ElemType type, ReduceOp op) {
  const int P = size(), r = rank();
  if (P == 1 || n == 0) return;
  const size_t es = elem_size(type);
  auto* base = static_cast<std::byte*>(data);
  // Chunk c holds elements [c*n/P, (c+1)*n/P).
  auto begin = [&](int c) { return static_cast<size_t>(c) * (n / P) + std::min<size_t>(c, n % P); };
  auto count = [&](int c) { return begin(c + 1) - begin(c); };
  const int right = (r + 1) % P, left = (r - 1 + P) % P;
  std::vector<std::byte> tmp(count(0) * es);  // chunk 0 is the largest
  // Reduce-scatter: after P-1 steps this rank holds the full sum of chunk (r+1) % P.
  for (int s = 0; s < P - 1; ++s) {
    const int sc = (r - s + P) % P, rc = (r - s - 1 + 2 * P) % P;
    std::unique_ptr<Request> reqs[2] = {
        post_recv(tmp.data(), count(rc) * es, left, kTagAllreduce),
        post_send(base + begin(sc) * es, count(sc) * es, right, kTagAllreduce)};
    wait_all(reqs);
    reduce_typed(base + begin(rc) * es, tmp.data(), count(rc), type, op);
  }
  // Allgather of the reduced chunks around the ring.
  for (int s = 0; s < P - 1; ++s) {
    const int sc = (r + 1 - s + P) % P, rc = (r - s + P) % P;
    std::unique_ptr<Request> reqs[2] = {
        post_recv(base + begin(rc) * es, count(rc) * es, left, kTagAllreduce),
        post_send(base + begin(sc) * es, count(sc) * es, right, kTagAllreduce)};
    wait_all(reqs);
  }
}

void Communicator::do_broadcast(void* buf, size_t bytes, int root) {
  const int P = size();
  if (P == 1) return;
  std::vector<std::unique_ptr<Request>> reqs;
  if (rank() == root) {
    for (int d = 0; d < P; ++d)
      if (d != root) reqs.push_back(post_send(buf, bytes, d, kTagBroadcast));
  } else {
    reqs.push_back(post_recv(buf, bytes, root, kTagBroadcast));
  }
  wait_all(reqs);
}

void Communicator::do_barrier() {
  int64_t token = 0;
  do_allreduce(&token, 1, ElemType::I64, ReduceOp::Sum);
}

}  // namespace tandem::comm
