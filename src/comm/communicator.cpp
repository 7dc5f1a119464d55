// Communicator base: argument checks, timeouts, stats and the scope that names the
// collective in progress. The generic collectives are in collectives.cpp.
#include "tandem/comm/communicator.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::comm {

// Names the collective in progress for error messages (restores the outer one).
class OpScope {
 public:
  // The outermost collective with other ranks is in flight until it returns.
  OpScope(Communicator& c, std::string_view op)
      : c_(c), saved_(c.op_), begin_(c.trace_ ? now_seconds() : 0),
        flight_(saved_.empty() && c.size() > 1) {
    c.op_ = op;
    if (flight_) c.begin_flight();
  }
  ~OpScope() {
    if (flight_) c_.end_flight();
    // The outermost collective becomes one span (op names are string literals).
    if (c_.trace_ && saved_.empty()) c_.trace_->add(c_.op_.data(), "comm", begin_, now_seconds());
    c_.op_ = saved_;
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  Communicator& c_;
  std::string_view saved_;
  double begin_;
  bool flight_;
};

namespace {

double timeout_from_env() {
  const char* e = std::getenv("TANDEM_COMM_TIMEOUT");
  if (!e || !*e) return Communicator::kDefaultTimeout;
  char* end = nullptr;
  double v = std::strtod(e, &end);
  if (end == e || *end != '\0' || !(v > 0) || !std::isfinite(v))
    bad_input("TANDEM_COMM_TIMEOUT: expected a positive number of seconds, got '{}'", e);
  return v;
}

void check_span(const Communicator& c, std::string_view op, std::string_view name,
                std::span<const size_t> s) {
  if (static_cast<int>(s.size()) != c.size())
    fail(ErrorKind::Internal, "{}: {}: {} has {} entries, expected {} (one per rank)", c.who(),
         op, name, s.size(), c.size());
}

}  // namespace

Request::~Request() { landed(); }

bool Request::test() {
  const bool done = do_test();
  if (done) landed();
  return done;
}

void Request::wait(double timeout_s) { wait_until(now_seconds() + timeout_s, timeout_s); }

void Request::wait_until(double deadline, double timeout_s) {
  do_wait_until(deadline, timeout_s);
  landed();
}

void Request::landed() {
  if (!in_flight_on_) return;
  in_flight_on_->end_flight();
  in_flight_on_ = nullptr;
}

size_t elem_size(ElemType t) {
  switch (t) {
    case ElemType::F32: return 4;
    case ElemType::F64: return 8;
    case ElemType::I64: return 8;
  }
  return 0;
}

Communicator::Communicator(int rank, int size, int world_rank)
    : rank_(rank), size_(size), world_rank_(world_rank), timeout_(timeout_from_env()) {
  who_ = rank == world_rank ? fmt::format("rank {}", rank)
                            : fmt::format("rank {} (world rank {})", rank, world_rank);
}

Communicator::~Communicator() = default;

void Communicator::set_timeout(double seconds) {
  if (!(seconds > 0) || !std::isfinite(seconds))
    fail(ErrorKind::Internal, "{}: set_timeout: {} is not a positive number of seconds", who_,
         seconds);
  timeout_ = seconds;
}

std::string Communicator::describe_p2p(bool is_send, int peer, int tag) const {
  std::string s = op_.empty() ? std::string() : fmt::format("{}: ", op_);
  s += fmt::format("{} rank {}", is_send ? "send to" : "recv from", peer);
  if (tag <= kMaxTag) s += fmt::format(" (tag {})", tag);
  return s;
}

void Communicator::count_traffic(uint64_t sent, uint64_t received, uint64_t messages) {
  for (Communicator* c = this; c; c = c->parent_) {
    c->stats_.bytes_sent += sent;
    c->stats_.bytes_received += received;
    c->stats_.messages += messages;
  }
}

void Communicator::add_wait_seconds(double seconds) {
  for (Communicator* c = this; c; c = c->parent_) c->stats_.wait_seconds += seconds;
}

void Communicator::begin_flight() {
  const double t = now_seconds();
  for (Communicator* c = this; c; c = c->parent_)
    if (c->in_flight_++ == 0) c->flight_since_ = t;
}

void Communicator::end_flight() {
  const double t = now_seconds();
  for (Communicator* c = this; c; c = c->parent_)
    if (--c->in_flight_ == 0) c->stats_.transfer_seconds += t - c->flight_since_;
}

CommStats Communicator::stats() const {
  CommStats s = stats_;
  if (in_flight_ > 0) s.transfer_seconds += now_seconds() - flight_since_;
  return s;
}

void Communicator::reset_stats() {
  stats_ = {};
  if (in_flight_ > 0) flight_since_ = now_seconds();
}

void Communicator::unsupported(std::string_view op) const {
  fail(ErrorKind::Comm, "{}: {} is not supported by the {} backend", who_, op, backend());
}

// ---- point-to-point ----

void Communicator::track(Request& r) {
  if (r.in_flight_on_) return;
  begin_flight();
  r.in_flight_on_ = this;
}

std::unique_ptr<Request> Communicator::post_send(const void* buf, size_t bytes, int dst,
                                                 int tag) {
  auto r = do_isend(buf, bytes, dst, tag);
  if (dst != rank_) {
    count_traffic(bytes, 0, 1);
    track(*r);
  }
  return r;
}

std::unique_ptr<Request> Communicator::post_recv(void* buf, size_t bytes, int src, int tag) {
  auto r = do_irecv(buf, bytes, src, tag);
  if (src != rank_) {
    count_traffic(0, bytes, 0);
    track(*r);
  }
  return r;
}

std::unique_ptr<Request> Communicator::isend(const void* buf, size_t bytes, int dst, int tag) {
  if (dst < 0 || dst >= size_ || tag < 0 || tag > kMaxTag || (!buf && bytes))
    fail(ErrorKind::Internal, "{}: isend: bad arguments (dst {} of {}, tag {} of [0, {}], {} bytes)",
         who_, dst, size_, tag, kMaxTag, bytes);
  return post_send(buf, bytes, dst, tag);
}

std::unique_ptr<Request> Communicator::irecv(void* buf, size_t bytes, int src, int tag) {
  if (src < 0 || src >= size_ || tag < 0 || tag > kMaxTag || (!buf && bytes))
    fail(ErrorKind::Internal, "{}: irecv: bad arguments (src {} of {}, tag {} of [0, {}], {} bytes)",
         who_, src, size_, tag, kMaxTag, bytes);
  return post_recv(buf, bytes, src, tag);
}

void Communicator::wait(Request& req) {
  const TraceSpan span(op_.empty() ? trace_ : nullptr, "wait", "comm");
  req.wait(timeout_);
}

void Communicator::wait_all(std::span<const std::unique_ptr<Request>> reqs) {
  const TraceSpan span(op_.empty() ? trace_ : nullptr, "wait", "comm");
  const double deadline = now_seconds() + timeout_;
  for (const auto& r : reqs) {
    if (r) r->wait_until(deadline, timeout_);
  }
}

void Communicator::send(const void* buf, size_t bytes, int dst, int tag) {
  auto r = isend(buf, bytes, dst, tag);
  wait(*r);
}

void Communicator::recv(void* buf, size_t bytes, int src, int tag) {
  auto r = irecv(buf, bytes, src, tag);
  wait(*r);
}

void Communicator::sendrecv(const void* sbuf, size_t sbytes, int dst, void* rbuf, size_t rbytes,
                            int src, int tag) {
  std::unique_ptr<Request> reqs[2] = {irecv(rbuf, rbytes, src, tag), isend(sbuf, sbytes, dst, tag)};
  wait_all(reqs);
}

// ---- collectives: check arguments, name the op, dispatch ----

void Communicator::alltoallv(const void* send, std::span<const size_t> send_bytes,
                             std::span<const size_t> send_offsets, void* recv,
                             std::span<const size_t> recv_bytes,
                             std::span<const size_t> recv_offsets) {
  OpScope scope(*this, "alltoallv");
  check_span(*this, "alltoallv", "send_bytes", send_bytes);
  check_span(*this, "alltoallv", "send_offsets", send_offsets);
  check_span(*this, "alltoallv", "recv_bytes", recv_bytes);
  check_span(*this, "alltoallv", "recv_offsets", recv_offsets);
  if (send_bytes[rank_] != recv_bytes[rank_])
    fail(ErrorKind::Internal, "{}: alltoallv: sends {} bytes to itself but expects {}", who_,
         send_bytes[rank_], recv_bytes[rank_]);
  do_alltoallv(static_cast<const std::byte*>(send), send_bytes, send_offsets,
               static_cast<std::byte*>(recv), recv_bytes, recv_offsets);
}

void Communicator::allgatherv(const void* send, size_t bytes, void* recv,
                              std::span<const size_t> recv_bytes,
                              std::span<const size_t> recv_offsets) {
  OpScope scope(*this, "allgatherv");
  check_span(*this, "allgatherv", "recv_bytes", recv_bytes);
  check_span(*this, "allgatherv", "recv_offsets", recv_offsets);
  if (bytes != recv_bytes[rank_])
    fail(ErrorKind::Internal, "{}: allgatherv: sends {} bytes but recv_bytes[{}] is {}", who_,
         bytes, rank_, recv_bytes[rank_]);
  do_allgatherv(static_cast<const std::byte*>(send), bytes, static_cast<std::byte*>(recv),
                recv_bytes, recv_offsets);
}

void Communicator::allreduce(void* data, size_t n, ElemType type, ReduceOp op) {
  OpScope scope(*this, "allreduce");
  if (!data && n) fail(ErrorKind::Internal, "{}: allreduce: null data", who_);
  do_allreduce(data, n, type, op);
}

namespace {

// iallreduce without a native form: the blocking allreduce runs at the wait.
class DeferredAllreduce final : public Request {
 public:
  DeferredAllreduce(Communicator& c, void* data, size_t n, ElemType type, ReduceOp op)
      : c_(c), data_(data), n_(n), type_(type), op_(op) {}

 protected:
  bool do_test() override { return done_; }
  void do_wait_until(double, double) override {
    if (done_) return;
    done_ = true;
    c_.allreduce(data_, n_, type_, op_);
  }

 private:
  Communicator& c_;
  void* data_;
  size_t n_;
  ElemType type_;
  ReduceOp op_;
  bool done_ = false;
};

}  // namespace

std::unique_ptr<Request> Communicator::do_iallreduce(void* data, size_t n, ElemType type, ReduceOp op) {
  return std::make_unique<DeferredAllreduce>(*this, data, n, type, op);
}

std::unique_ptr<Request> Communicator::iallreduce(void* data, size_t n, ElemType type, ReduceOp op) {
  if (!data && n) fail(ErrorKind::Internal, "{}: iallreduce: null data", who_);
  auto r = do_iallreduce(data, n, type, op);
  if (size_ > 1 && n > 0) track(*r);
  return r;
}

void Communicator::broadcast(void* buf, size_t bytes, int root) {
  OpScope scope(*this, "broadcast");
  if (root < 0 || root >= size_)
    fail(ErrorKind::Internal, "{}: broadcast: root {} out of [0, {})", who_, root, size_);
  do_broadcast(buf, bytes, root);
}

void Communicator::barrier() {
  OpScope scope(*this, "barrier");
  do_barrier();
}

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  OpScope scope(*this, "split");
  if (color < kNoColor)
    fail(ErrorKind::Internal, "{}: split: color {} must be >= 0 or kNoColor", who_, color);
  auto sub = do_split(color, key);
  if (sub) {
    sub->set_timeout(timeout_);
    sub->parent_ = this;
  }
  return sub;
}

std::unique_ptr<Communicator> Communicator::do_split(int, int) { unsupported("split"); }

}  // namespace tandem::comm
