#pragma once
// Communicator: point-to-point and collective communication among the P ranks of a
// sequence-parallel run. A Communicator is an object handed to the code that needs it,
// never a global. Backends:
//   - in-process (in_process.hpp): P ranks as threads of one process (tests, no MPI);
//   - MPI (mpi.hpp): one process per rank under mpirun, when built with TANDEM_HAVE_MPI;
//   - NCCL (nccl.hpp): one rank per GPU, when built with TANDEM_HAVE_NCCL (CUDA and NCCL
//     found); its buffers are device memory. Any hook a backend cannot serve calls
//     unsupported(), never silently does nothing.
//
// Shape (after PyTorch c10d's ProcessGroup/Work): rank and size live on the object,
// non-blocking operations return a Request whose wait(timeout) reports errors.
//
// Rules for callers:
//   - Every rank calls the collectives of a communicator in the same order with
//     consistent arguments (like MPI). A communicator is used by one thread at a time.
//   - Every wait has a deadline: timeout() seconds (default 60, environment variable
//     TANDEM_COMM_TIMEOUT overrides; set_timeout() changes it). On a timeout or a peer's
//     failure the operation throws tandem::Error(ErrorKind::Comm) whose message names
//     this rank, the operation and, for point-to-point, the peer. After such an error
//     the communicator is broken: the caller should end the run (exit code 4).
//   - Point-to-point messages are matched by (source, tag), in the order they were sent;
//     the received size must equal the posted size exactly.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tandem/core/trace.hpp"

namespace tandem::comm {

class Communicator;

// Handle of a non-blocking operation. Its communicator must outlive it. Destroying a
// request that has not completed cancels it (do not reuse that peer and tag afterwards);
// its buffer must stay valid until then. Progress: MPI moves large messages only while
// the ranks call into it, so code that overlaps compute with a transfer should call
// test() now and then (e.g. between blocks of work).
// A point-to-point request to another rank is in flight from its post to the moment its
// completion is observed (test() returns true, a wait returns, or it is destroyed): its
// communicator sums that time (CommStats::transfer_seconds).
class Request {
 public:
  virtual ~Request();
  // True once the operation is complete. Throws Error(Comm) if it failed.
  bool test();
  // Blocks until complete; throws Error(Comm) "rank R: <op> to/from rank S timed out
  // after X s" after timeout_s seconds, or at once when a peer has failed.
  void wait(double timeout_s);
  // The same with an absolute deadline (tandem::now_seconds() clock); a timeout reports
  // timeout_s as X. Communicator::wait_all gives its requests one deadline this way.
  void wait_until(double deadline, double timeout_s);

 protected:
  // The backend's forms of test() and wait_until().
  virtual bool do_test() = 0;
  virtual void do_wait_until(double deadline, double timeout_s) = 0;

 private:
  friend class Communicator;
  void landed();  // its completion was observed (or it is cancelled): no longer in flight
  Communicator* in_flight_on_ = nullptr;  // counting its time in flight; null: not counted
};

enum class ReduceOp { Sum, Max };
enum class ElemType { F32, F64, I64 };
size_t elem_size(ElemType t);

// Traffic counted by every operation of one communicator (self-copies excluded). A
// sub-communicator's (split()) traffic, waits and transfer time count in its own stats
// and in those of every communicator it was split from, which must outlive it: the
// world's stats are the rank's whole traffic.
// Point-to-point bytes count when posted. For collectives, bytes are what this rank
// hands to / takes from other ranks; allreduce counts the 2(P-1)/P * n volume of a ring.
// Time: wait_seconds is what the rank spent blocked; transfer_seconds is the time its
// communication was in flight: the union of the intervals from each point-to-point
// operation's post (isend/irecv to another rank) to the moment its completion was
// observed (Request::test() true, a wait returned, the request destroyed), and of each
// collective from its start to its return (P > 1). Concurrent operations count once.
// A wait on another rank lies inside such an interval, so wait <= transfer, and
// 1 - wait / transfer is the share of the in-flight time that the rank spent on other
// work (compute hid it).
// Observed completion is an upper bound of the wire time: a message that arrived early
// but is tested late counts until the test.
struct CommStats {
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t messages = 0;     // messages (or collective blocks) sent to other ranks
  double wait_seconds = 0;   // time blocked waiting for operations to complete (MPI:
                             // including time inside Request::test(), which progresses them)
  double transfer_seconds = 0;  // time with at least one operation in flight (above)
};

class Communicator {
 public:
  // User tags are in [0, kMaxTag]; larger tags are reserved for the collectives.
  static constexpr int kMaxTag = 32000 - 1;
  // Color for split() that puts this rank in no sub-communicator.
  static constexpr int kNoColor = -1;
  static constexpr double kDefaultTimeout = 60.0;

  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  virtual std::string_view backend() const = 0;
  // "rank R" (or "rank R (world rank W)" for a sub-communicator): prefix of messages.
  const std::string& who() const { return who_; }

  double timeout() const { return timeout_; }
  void set_timeout(double seconds);

  // ---- point-to-point (non-blocking, and blocking forms that wait timeout()) ----
  std::unique_ptr<Request> isend(const void* buf, size_t bytes, int dst, int tag);
  std::unique_ptr<Request> irecv(void* buf, size_t bytes, int src, int tag);
  void send(const void* buf, size_t bytes, int dst, int tag);
  void recv(void* buf, size_t bytes, int src, int tag);
  void sendrecv(const void* sbuf, size_t sbytes, int dst, void* rbuf, size_t rbytes,
                int src, int tag);
  // Waits with timeout(); wait_all uses one deadline for all of them.
  void wait(Request& req);
  void wait_all(std::span<const std::unique_ptr<Request>> reqs);

  // ---- collectives (blocking, with timeout()) ----
  // Block for rank j: send + send_offsets[j], send_bytes[j] bytes; the block from rank j
  // lands at recv + recv_offsets[j]. All spans have size() entries.
  void alltoallv(const void* send, std::span<const size_t> send_bytes,
                 std::span<const size_t> send_offsets, void* recv,
                 std::span<const size_t> recv_bytes, std::span<const size_t> recv_offsets);
  // This rank's bytes (== recv_bytes[rank()]) go to recv + recv_offsets[rank()] of all.
  // send may equal recv + recv_offsets[rank()] (in place).
  void allgatherv(const void* send, size_t bytes, void* recv,
                  std::span<const size_t> recv_bytes, std::span<const size_t> recv_offsets);
  // In place; every rank ends with bit-identical results.
  void allreduce(void* data, size_t n, ElemType type, ReduceOp op);
  void allreduce(float* data, size_t n, ReduceOp op) { allreduce(data, n, ElemType::F32, op); }
  void allreduce(double* data, size_t n, ReduceOp op) { allreduce(data, n, ElemType::F64, op); }
  void allreduce(int64_t* data, size_t n, ReduceOp op) { allreduce(data, n, ElemType::I64, op); }
  // Non-blocking allreduce in place: data is the result once the request completes
  // (test() true or a wait). Every rank posts its iallreduce calls in the same order
  // and waits them in that order (a backend without a native form runs the blocking
  // allreduce inside the wait: its test() is false until then).
  std::unique_ptr<Request> iallreduce(void* data, size_t n, ElemType type, ReduceOp op);
  std::unique_ptr<Request> iallreduce(float* data, size_t n, ReduceOp op) {
    return iallreduce(data, n, ElemType::F32, op);
  }
  void broadcast(void* buf, size_t bytes, int root);
  void barrier();
  // Collective: ranks with equal color form a sub-communicator, ranked by (key, rank).
  // Returns nullptr for color kNoColor. Sub-communicators inherit timeout().
  std::unique_ptr<Communicator> split(int color, int key);

  // Records every wait and collective as a "comm" span while set (not owned).
  void set_trace(Trace* t) { trace_ = t; }
  Trace* trace() const { return trace_; }

  // The counts so far; transfer_seconds includes an interval still open (operations in
  // flight now) up to this moment.
  CommStats stats() const;
  // Zeroes the counts; operations in flight count from now on.
  void reset_stats();
  // Time blocked on one of this communicator's operations (the backends' requests
  // report it); counted as stats() says.
  void add_wait_seconds(double seconds);

 protected:
  Communicator(int rank, int size, int world_rank);

  // Backends implement point-to-point; tags here may be internal (> kMaxTag).
  virtual std::unique_ptr<Request> do_isend(const void* buf, size_t bytes, int dst, int tag) = 0;
  virtual std::unique_ptr<Request> do_irecv(void* buf, size_t bytes, int src, int tag) = 0;
  // Collectives: the defaults are generic algorithms over do_isend/do_irecv (see
  // collectives.cpp); backends with native collectives override them. Arguments are
  // already checked. do_split has no generic form: the default calls unsupported().
  virtual void do_alltoallv(const std::byte* send, std::span<const size_t> send_bytes,
                            std::span<const size_t> send_offsets, std::byte* recv,
                            std::span<const size_t> recv_bytes,
                            std::span<const size_t> recv_offsets);
  virtual void do_allgatherv(const std::byte* send, size_t bytes, std::byte* recv,
                             std::span<const size_t> recv_bytes,
                             std::span<const size_t> recv_offsets);
  virtual void do_allreduce(void* data, size_t n, ElemType type, ReduceOp op);
  // The default defers to do_allreduce at the wait (see iallreduce).
  virtual std::unique_ptr<Request> do_iallreduce(void* data, size_t n, ElemType type, ReduceOp op);
  virtual void do_broadcast(void* buf, size_t bytes, int root);
  virtual void do_barrier();
  virtual std::unique_ptr<Communicator> do_split(int color, int key);

  // Internal tags of the generic collectives (outside the user range).
  enum InternalTag : int {
    kTagAlltoallv = kMaxTag + 1,
    kTagAllgatherv,
    kTagAllreduce,
    kTagBroadcast,
    kTagSplit,
  };
  // Posts with stats counted; used by the generic collectives.
  std::unique_ptr<Request> post_send(const void* buf, size_t bytes, int dst, int tag);
  std::unique_ptr<Request> post_recv(void* buf, size_t bytes, int src, int tag);

  // The collective in progress ("alltoallv", ...) or empty: backends put it in messages.
  std::string_view current_op() const { return op_; }
  // "alltoallv: recv from rank 2" / "send to rank 1 (tag 7)": names a p2p operation.
  std::string describe_p2p(bool is_send, int peer, int tag) const;
  int world_rank() const { return world_rank_; }
  void count_traffic(uint64_t sent, uint64_t received, uint64_t messages);
  [[noreturn]] void unsupported(std::string_view op) const;

 private:
  friend class OpScope;
  friend class Request;
  // One more / one less operation in flight, here and on every communicator this one
  // was split from: a communicator's transfer time is the union over it and its subs.
  void begin_flight();
  void end_flight();
  void track(Request& r);  // r is in flight from now until it lands
  int rank_;
  int size_;
  int world_rank_;
  std::string who_;
  double timeout_;
  std::string_view op_;
  CommStats stats_;
  int in_flight_ = 0;          // operations in flight (its own and its subs')
  double flight_since_ = 0;    // when in_flight_ last rose from 0 (or the last reset)
  Communicator* parent_ = nullptr;  // split() from it: traffic counts there too
  Trace* trace_ = nullptr;
};

}  // namespace tandem::comm
