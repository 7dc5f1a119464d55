#pragma once
// Checks of a communicator that every backend must pass, run by the in-process gtest
// and by comm_mpi_check under mpirun. Every rank calls them in the same order; a
// mismatch throws std::runtime_error naming the rank and what differed.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::comm::checks {

#define COMM_EXPECT(c, cond, ...)                                                      \
  do {                                                                                 \
    if (!(cond))                                                                       \
      throw std::runtime_error((c).who() + ": check failed: " + fmt::format(__VA_ARGS__)); \
  } while (0)

inline uint8_t pattern(int src, int dst, size_t k) {
  return static_cast<uint8_t>(src * 31 + dst * 7 + k * 13 + 1);
}

// Each rank sends 100 + rank ints to its right neighbour.
inline void ring(Communicator& c) {
  const int P = c.size(), r = c.rank(), right = (r + 1) % P, left = (r - 1 + P) % P;
  std::vector<int32_t> out(100 + r), in(100 + left, -1);
  for (size_t k = 0; k < out.size(); ++k) out[k] = r * 1000 + static_cast<int32_t>(k);
  auto rq = c.irecv(in.data(), in.size() * 4, left, 7);
  auto sq = c.isend(out.data(), out.size() * 4, right, 7);
  c.wait(*sq);
  c.wait(*rq);
  COMM_EXPECT(c, rq->test() && sq->test(), "requests not complete after wait");
  for (size_t k = 0; k < in.size(); ++k)
    COMM_EXPECT(c, in[k] == left * 1000 + static_cast<int32_t>(k), "ring: in[{}] = {}", k, in[k]);
}

// Messages are matched by tag, in send order per tag; receives posted before or after
// the sends, waited in reverse order.
inline void tags(Communicator& c) {
  const int P = c.size(), r = c.rank(), dst = (r + 1) % P, src = (r - 1 + P) % P;
  for (int round = 0; round < 2; ++round) {
    const int32_t sent[5][2] = {{3, 30}, {1, 10}, {3, 31}, {2, 20}, {3, 32}};  // (tag, value)
    const int32_t want[5][2] = {{2, 20}, {1, 10}, {3, 30}, {3, 31}, {3, 32}};
    int32_t got[5] = {-1, -1, -1, -1, -1};
    std::vector<std::unique_ptr<Request>> rq, sq;
    auto post_recvs = [&] {
      for (int i = 0; i < 5; ++i) rq.push_back(c.irecv(&got[i], 4, src, want[i][0]));
    };
    auto post_sends = [&] {
      for (auto& m : sent) sq.push_back(c.isend(&m[1], 4, dst, m[0]));
    };
    if (round == 0) post_recvs();
    c.barrier();
    post_sends();
    c.barrier();
    if (round == 1) post_recvs();
    for (int i = 4; i >= 0; --i) c.wait(*rq[i]);
    c.wait_all(sq);
    for (int i = 0; i < 5; ++i)
      COMM_EXPECT(c, got[i] == want[i][1], "tags round {}: recv {} (tag {}) got {}",
                  round, i, want[i][0], got[i]);
  }
}

// sendrecv with every shift, including a 100 KB message (several chunks under MPI when
// TANDEM_MPI_CHUNK_BYTES is small).
inline void sendrecv(Communicator& c) {
  const int P = c.size(), r = c.rank();
  for (int shift = 0; shift < P; ++shift) {
    const int dst = (r + shift) % P, src = (r - shift + P) % P;
    const size_t n = shift == 1 ? 100000 : 64 + shift;
    std::vector<uint8_t> out(n), in(n, 0);
    for (size_t k = 0; k < n; ++k) out[k] = pattern(r, dst, k);
    c.sendrecv(out.data(), n, dst, in.data(), n, src, 11);
    for (size_t k = 0; k < n; ++k)
      COMM_EXPECT(c, in[k] == pattern(src, r, k), "sendrecv shift {}: byte {}", shift, k);
  }
}

inline size_t a2a_bytes(int i, int j) { return static_cast<size_t>((i * 3 + j * 5) % 4) * 3; }

// Uneven blocks (some empty); send blocks stored in reverse order with 2-byte gaps,
// receive blocks in order with 3-byte gaps that must stay untouched.
inline void alltoallv(Communicator& c) {
  const int P = c.size(), r = c.rank();
  std::vector<size_t> sb(P), so(P), rb(P), ro(P);
  size_t spos = 0, rpos = 0;
  for (int j = P - 1; j >= 0; --j) sb[j] = a2a_bytes(r, j), so[j] = spos, spos += sb[j] + 2;
  for (int j = 0; j < P; ++j) rb[j] = a2a_bytes(j, r), ro[j] = rpos, rpos += rb[j] + 3;
  std::vector<uint8_t> send(spos, 0xAA), recv(rpos, 0xEE);
  for (int j = 0; j < P; ++j)
    for (size_t k = 0; k < sb[j]; ++k) send[so[j] + k] = pattern(r, j, k);
  c.alltoallv(send.data(), sb, so, recv.data(), rb, ro);
  for (int j = 0; j < P; ++j) {
    for (size_t k = 0; k < rb[j]; ++k)
      COMM_EXPECT(c, recv[ro[j] + k] == pattern(j, r, k), "alltoallv: block from {} byte {}", j, k);
    for (size_t k = 0; k < 3; ++k)
      COMM_EXPECT(c, recv[ro[j] + rb[j] + k] == 0xEE, "alltoallv: gap after block {} written", j);
  }
}

// Uneven blocks (rank % 3 == 0 sends nothing), reverse layout with gaps; then in place.
inline void allgatherv(Communicator& c) {
  const int P = c.size(), r = c.rank();
  auto bytes = [](int j) { return static_cast<size_t>(j % 3) * 5; };
  std::vector<size_t> rb(P), ro(P);
  size_t pos = 0;
  for (int j = P - 1; j >= 0; --j) rb[j] = bytes(j), ro[j] = pos, pos += rb[j] + 1;
  std::vector<uint8_t> mine(bytes(r)), recv(pos, 0xEE);
  for (size_t k = 0; k < mine.size(); ++k) mine[k] = pattern(r, 0, k);
  c.allgatherv(mine.data(), mine.size(), recv.data(), rb, ro);
  for (int j = 0; j < P; ++j) {
    for (size_t k = 0; k < rb[j]; ++k)
      COMM_EXPECT(c, recv[ro[j] + k] == pattern(j, 0, k), "allgatherv: block {} byte {}", j, k);
    COMM_EXPECT(c, recv[ro[j] + rb[j]] == 0xEE, "allgatherv: gap after block {} written", j);
  }
  std::vector<int64_t> all(P, -1);  // in place: own entry already in the output
  all[r] = 100 + r;
  std::vector<size_t> eb(P, 8), eo(P);
  for (int j = 0; j < P; ++j) eo[j] = 8 * static_cast<size_t>(j);
  c.allgatherv(all.data() + r, 8, all.data(), eb, eo);
  for (int j = 0; j < P; ++j) COMM_EXPECT(c, all[j] == 100 + j, "allgatherv in place: [{}]", j);
}

template <typename T>
void allreduce_typed(Communicator& c, const char* name) {
  const int P = c.size(), r = c.rank();
  for (size_t n : {size_t{0}, size_t{1}, size_t{3}, static_cast<size_t>(P + 1), size_t{1000}}) {
    std::vector<T> s(n), m(n);
    for (size_t i = 0; i < n; ++i) s[i] = m[i] = static_cast<T>((r + 1) * static_cast<int>(i % 7 + 1));
    c.allreduce(s.data(), n, ReduceOp::Sum);
    c.allreduce(m.data(), n, ReduceOp::Max);
    for (size_t i = 0; i < n; ++i) {
      const T base = static_cast<T>(i % 7 + 1);
      COMM_EXPECT(c, s[i] == base * static_cast<T>(P * (P + 1) / 2), "allreduce {} sum n={} [{}]",
                  name, n, i);
      COMM_EXPECT(c, m[i] == base * static_cast<T>(P), "allreduce {} max n={} [{}]", name, n, i);
    }
  }
}

// Exact sums and maxima, then inexact float sums that must be bit-identical everywhere.
inline void allreduce(Communicator& c) {
  allreduce_typed<float>(c, "f32");
  allreduce_typed<double>(c, "f64");
  allreduce_typed<int64_t>(c, "i64");
  const int P = c.size(), r = c.rank();
  const size_t n = 257;
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.1f * static_cast<float>(r + 1) / static_cast<float>(i + 3);
  c.allreduce(v.data(), n, ReduceOp::Sum);
  std::vector<float> all(n * P);
  std::vector<size_t> b(P, n * 4), o(P);
  for (int j = 0; j < P; ++j) o[j] = n * 4 * static_cast<size_t>(j);
  c.allgatherv(v.data(), n * 4, all.data(), b, o);
  for (int j = 0; j < P; ++j)
    COMM_EXPECT(c, std::memcmp(all.data() + j * n, v.data(), n * 4) == 0,
                "allreduce: results of rank {} differ from this rank's", j);
}

inline void broadcast(Communicator& c) {
  const int P = c.size(), r = c.rank();
  for (int root = 0; root < P; ++root) {
    const size_t n = root * 10 + 5;
    std::vector<uint8_t> buf(n, 0);
    if (r == root)
      for (size_t k = 0; k < n; ++k) buf[k] = pattern(root, 99, k);
    c.broadcast(buf.data(), n, root);
    for (size_t k = 0; k < n; ++k)
      COMM_EXPECT(c, buf[k] == pattern(root, 99, k), "broadcast from {}: byte {}", root, k);
    c.broadcast(nullptr, 0, root);
  }
}

inline void barrier(Communicator& c) {
  for (int i = 0; i < 5; ++i) c.barrier();
}

// 2D mesh: rows (color rank / 2) and columns (color rank % 2), collectives on each.
inline void split(Communicator& c) {
  const int P = c.size(), r = c.rank();
  auto row = c.split(r / 2, r);
  auto col = c.split(r % 2, r);
  COMM_EXPECT(c, row && col, "split returned null");
  const int row_size = std::min(2, P - 2 * (r / 2)), col_size = (P - r % 2 + 1) / 2;
  COMM_EXPECT(c, row->size() == row_size && row->rank() == r % 2, "row: rank {} of {}",
              row->rank(), row->size());
  COMM_EXPECT(c, col->size() == col_size && col->rank() == r / 2, "col: rank {} of {}",
              col->rank(), col->size());
  int64_t sum = r;
  row->allreduce(&sum, 1, ReduceOp::Sum);
  int64_t want = 0;
  for (int j = 2 * (r / 2); j < 2 * (r / 2) + row_size; ++j) want += j;
  COMM_EXPECT(c, sum == want, "row allreduce: {} != {}", sum, want);
  std::vector<int32_t> members(col_size, -1);
  std::vector<size_t> b(col_size, 4), o(col_size);
  for (int j = 0; j < col_size; ++j) o[j] = 4 * static_cast<size_t>(j);
  int32_t me = r;
  col->allgatherv(&me, 4, members.data(), b, o);
  for (int j = 0; j < col_size; ++j)
    COMM_EXPECT(c, members[j] == 2 * j + r % 2, "col allgatherv: [{}] = {}", j, members[j]);
  col->barrier();
  // Key orders the ranks; kNoColor leaves a rank out; a sub-communicator splits again.
  auto rev = c.split(0, -r);
  COMM_EXPECT(c, rev && rev->rank() == P - 1 - r, "reversed split: rank {}", rev ? rev->rank() : -1);
  auto odd = c.split(r % 2 ? 0 : Communicator::kNoColor, r);
  COMM_EXPECT(c, (r % 2 == 1) == (odd != nullptr), "kNoColor split");
  auto single = row->split(row->rank(), 0);
  COMM_EXPECT(c, single && single->size() == 1, "nested split");
  double x = 2.5;
  single->allreduce(&x, 1, ReduceOp::Sum);
  COMM_EXPECT(c, x == 2.5, "allreduce on a 1-rank communicator");
}

// Bytes and messages of point-to-point and alltoallv traffic (self excluded).
inline void stats(Communicator& c) {
  const int P = c.size(), r = c.rank(), right = (r + 1) % P, left = (r - 1 + P) % P;
  c.barrier();
  c.reset_stats();
  std::vector<uint8_t> out(1000 + r), in(1000 + left);
  c.sendrecv(out.data(), out.size(), right, in.data(), in.size(), left, 3);
  const CommStats s = c.stats();
  COMM_EXPECT(c, s.bytes_sent == (P > 1 ? out.size() : 0u), "bytes_sent {}", s.bytes_sent);
  COMM_EXPECT(c, s.bytes_received == (P > 1 ? in.size() : 0u), "bytes_received {}", s.bytes_received);
  COMM_EXPECT(c, s.messages == (P > 1 ? 1u : 0u), "messages {}", s.messages);
  c.reset_stats();
  alltoallv(c);
  uint64_t sent = 0, received = 0;
  for (int j = 0; j < P; ++j)
    if (j != r) sent += a2a_bytes(r, j), received += a2a_bytes(j, r);
  COMM_EXPECT(c, c.stats().bytes_sent == sent && c.stats().bytes_received == received,
              "alltoallv stats: sent {} (want {}), received {} (want {})", c.stats().bytes_sent,
              sent, c.stats().bytes_received, received);
  COMM_EXPECT(c, c.stats().messages == static_cast<uint64_t>(P - 1), "alltoallv messages {}",
              c.stats().messages);
}

// Time in flight (CommStats::transfer_seconds, the union of the intervals from each post
// to its observed completion) beside the time blocked (wait_seconds).
//   exposed: rank 1 sends 60 ms after a barrier while rank 0 waits on its receive at once:
//     in flight is the wait, nothing hidden (a bound in seconds as well as a share: if rank
//     0 leaves the barrier late both are near 0);
//   hidden: each rank's message to its right neighbour was sent before a barrier; each
//     posts the receive and another send, works 50 ms, then waits: in flight at least the
//     work, at most the time elapsed (two operations in flight at once count once), and
//     the wait a small share of it;
//   sub-communicator: the same with the receive on a split() and the send on the parent:
//     the sub counts its receive, the parent the union of both (once, not the sum).
// Self messages and one-rank collectives are never in flight.
inline void transfer(Communicator& c) {
  const int P = c.size(), r = c.rank(), right = (r + 1) % P, left = (r - 1 + P) % P;
  const auto hidden = [](const CommStats& s) { return 1 - s.wait_seconds / s.transfer_seconds; };
  if (P == 1) {
    c.reset_stats();
    int32_t x = 7, y = 0;
    c.sendrecv(&x, 4, 0, &y, 4, 0, 20);
    c.barrier();
    COMM_EXPECT(c, y == 7 && c.stats().transfer_seconds == 0, "P = 1: in flight {} s",
                c.stats().transfer_seconds);
    return;
  }
  // Exposed.
  c.barrier();
  c.reset_stats();
  int32_t x = 0;
  if (r == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    x = 5;
    c.send(&x, 4, 0, 21);
  } else if (r == 0) {
    auto rq = c.irecv(&x, 4, 1, 21);
    c.wait(*rq);
    const CommStats s = c.stats();
    COMM_EXPECT(c, x == 5, "exposed: got {}", x);
    COMM_EXPECT(c, s.transfer_seconds >= s.wait_seconds, "exposed: in flight {} s < wait {} s",
                s.transfer_seconds, s.wait_seconds);
    COMM_EXPECT(c, s.transfer_seconds - s.wait_seconds <= std::max(0.005, 0.1 * s.transfer_seconds),
                "exposed: in flight {} s, wait {} s: not the same", s.transfer_seconds, s.wait_seconds);
  }
  // Hidden, on c and then with a sub-communicator.
  auto sub = c.split(0, r);
  for (const bool on_sub : {false, true}) {
    Communicator& rc = on_sub ? *sub : c;
    const int tag = on_sub ? 24 : 22;
    int32_t early = 100 + r, got = -1, late = 200 + r, got_late = -1;
    rc.send(&early, 4, right, tag);
    c.barrier();  // every early message is sent
    c.reset_stats();
    sub->reset_stats();
    const double t0 = now_seconds();
    auto rq = rc.irecv(&got, 4, left, tag);
    auto sq = c.isend(&late, 4, right, 23);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    c.wait(*sq);
    rc.wait(*rq);
    const double elapsed = now_seconds() - t0;
    const CommStats s = c.stats(), ss = sub->stats();
    c.recv(&got_late, 4, left, 23);
    const char* where = on_sub ? "hidden (receive on a sub-communicator)" : "hidden";
    COMM_EXPECT(c, got == 100 + left && got_late == 200 + left, "{}: got {} and {}", where, got,
                got_late);
    COMM_EXPECT(c, s.transfer_seconds >= 0.049 && s.transfer_seconds <= elapsed,
                "{}: in flight {} s, want >= 0.05 s (the work) and <= {} s (elapsed)", where,
                s.transfer_seconds, elapsed);
    COMM_EXPECT(c, hidden(s) >= 0.8, "{}: in flight {} s, wait {} s: hidden {}", where,
                s.transfer_seconds, s.wait_seconds, hidden(s));
    if (on_sub)
      COMM_EXPECT(c, ss.transfer_seconds >= 0.049 && ss.transfer_seconds <= s.transfer_seconds &&
                         ss.wait_seconds <= s.wait_seconds,
                  "{}: sub in flight {} s, wait {} s; parent {} s, {} s", where,
                  ss.transfer_seconds, ss.wait_seconds, s.transfer_seconds, s.wait_seconds);
    else
      COMM_EXPECT(c, ss.transfer_seconds == 0, "hidden: the sub counted the parent's {} s",
                  ss.transfer_seconds);
  }
}

struct NamedCheck {
  const char* name;
  void (*fn)(Communicator&);
};
inline const std::vector<NamedCheck>& all_checks() {
  static const std::vector<NamedCheck> v = {
      {"ring", ring},           {"tags", tags},           {"sendrecv", sendrecv},
      {"alltoallv", alltoallv}, {"allgatherv", allgatherv}, {"allreduce", allreduce},
      {"broadcast", broadcast}, {"barrier", barrier},     {"split", split},
      {"stats", stats},         {"transfer", transfer}};
  return v;
}

}  // namespace tandem::comm::checks
