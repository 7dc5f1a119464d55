// NCCL backend (see tandem/comm/nccl.hpp). The NCCL communicator is non-blocking
// (ncclConfig_t::blocking = 0), so no NCCL call can hang the process: each call that
// reports ncclInProgress is settled by polling ncclCommGetAsyncError against a
// deadline, and each operation's completion is a CUDA event polled the same way. On a
// timeout or error the communicator is aborted (ncclCommAbort) and Error(Comm) thrown.
// Every operation runs on one stream of the communicator; queued point-to-point
// operations are launched as one group before anything else is enqueued.
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "comm/poll_wait.hpp"
#include "tandem/comm/nccl.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::comm {
namespace {

class NcclComm;

// One CUDA event shared by the requests launched in the same group.
struct Event {
  cudaEvent_t ev = nullptr;
  ~Event() {
    if (ev) cudaEventDestroy(ev);
  }
};

class NcclRequest final : public Request {
 public:
  NcclRequest(NcclComm* c, std::string desc) : c_(c), desc_(std::move(desc)) {}
  ~NcclRequest() override;

  // Set by NcclComm when the group holding this operation is enqueued.
  void launched(std::shared_ptr<Event> ev) { ev_ = std::move(ev); }
  bool is_launched() const { return ev_ != nullptr; }
  const std::string& desc() const { return desc_; }

 protected:
  bool do_test() override;
  void do_wait_until(double deadline, double timeout_s) override;

 private:
  bool poll();
  NcclComm* c_;
  std::string desc_;
  std::shared_ptr<Event> ev_;
  bool done_ = false;
};

ncclDataType_t nccl_type(ElemType t) {
  switch (t) {
    case ElemType::F32: return ncclFloat32;
    case ElemType::F64: return ncclFloat64;
    case ElemType::I64: return ncclInt64;
  }
  return ncclFloat32;
}

// Node-local rank under mpirun (Open MPI, then MPICH/Slurm), else -1.
int local_rank_from_env() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    const char* e = std::getenv(name);
    if (e && *e) return std::atoi(e);
  }
  return -1;
}

// Sleeps a little between polls once a wait has lasted a while (like the MPI backend).
class NcclComm final : public Communicator {
 public:
  NcclComm(ncclComm_t comm, int device, int rank, int size, int world_rank)
      : Communicator(rank, size, world_rank), comm_(comm), device_(device) {
    set_device();
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaMalloc(&flag_, sizeof(int)), "cudaMalloc");
  }

  ~NcclComm() override {
    if (!failed_) {
      // Flush what was issued, with a deadline; abort if it does not finish.
      cudaSetDevice(device_);
      ncclResult_t r = ncclCommFinalize(comm_);
      const double deadline = now_seconds() + timeout();
      ncclResult_t state = r;
      while (r == ncclSuccess || r == ncclInProgress) {
        if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess || state != ncclInProgress)
          break;
        if (now_seconds() > deadline) {
          state = ncclInternalError;
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      if (r != ncclSuccess && r != ncclInProgress) state = r;
      if (state == ncclSuccess)
        ncclCommDestroy(comm_);
      else
        ncclCommAbort(comm_);
    }
    if (flag_) cudaFree(flag_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string_view backend() const override { return "nccl"; }

  // ---- used by NcclRequest ----

  [[noreturn]] void raise(const std::string& desc, const std::string& what) {
    abort_comm();
    fail(ErrorKind::Comm, "{}: {}{}", who(), desc, what);
  }

  // Launches the queued point-to-point operations as one group.
  void flush() {
    if (pending_.empty()) return;
    std::vector<Pending> ops;
    ops.swap(pending_);
    const std::string desc = ops.size() == 1 ? ops[0].req->desc() : "point-to-point group";
    set_device();
    nccl_check(ncclGroupStart(), desc, "ncclGroupStart");
    for (const Pending& p : ops) {
      const ncclResult_t r = p.send ? ncclSend(p.buf, p.bytes, ncclUint8, p.peer, comm_, stream_)
                                    : ncclRecv(p.buf, p.bytes, ncclUint8, p.peer, comm_, stream_);
      nccl_check(r, p.req->desc(), p.send ? "ncclSend" : "ncclRecv");
    }
    nccl_check(ncclGroupEnd(), desc, "ncclGroupEnd");
    auto ev = record(desc);
    for (const Pending& p : ops) p.req->launched(ev);
  }

  void forget(NcclRequest* req) {
    std::erase_if(pending_, [&](const Pending& p) { return p.req == req; });
  }

  // Whether the event has fired; throws on a CUDA or asynchronous NCCL error.
  bool query(const Event& ev, const std::string& desc) {
    if (failed_) fail(ErrorKind::Comm, "{}: {}: the communicator was aborted", who(), desc);
    set_device();
    const cudaError_t e = cudaEventQuery(ev.ev);
    if (e == cudaSuccess) return true;
    if (e != cudaErrorNotReady) raise(desc, fmt::format(": CUDA error: {}", cudaGetErrorString(e)));
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) raise(desc, fmt::format(": NCCL error: {}", ncclGetErrorString(r)));
    if (state != ncclSuccess && state != ncclInProgress)
      raise(desc, fmt::format(": NCCL error: {} ({})", ncclGetErrorString(state),
                              ncclGetLastError(comm_)));
    return false;
  }

 protected:
  std::unique_ptr<Request> do_isend(const void* buf, size_t bytes, int dst, int tag) override {
    return queue(true, const_cast<void*>(buf), bytes, dst, tag);
  }
  std::unique_ptr<Request> do_irecv(void* buf, size_t bytes, int src, int tag) override {
    return queue(false, buf, bytes, src, tag);
  }

  void do_alltoallv(const std::byte* send, std::span<const size_t> send_bytes,
                    std::span<const size_t> send_offsets, std::byte* recv,
                    std::span<const size_t> recv_bytes,
                    std::span<const size_t> recv_offsets) override {
    const int P = size(), me = rank();
    const std::string desc = "alltoallv (grouped ncclSend/ncclRecv)";
    flush();
    set_device();
    uint64_t sent = 0, received = 0;
    if (send_bytes[me])
      cuda_check(cudaMemcpyAsync(recv + recv_offsets[me], send + send_offsets[me], send_bytes[me],
                                 cudaMemcpyDeviceToDevice, stream_),
                 "cudaMemcpyAsync");
    nccl_check(ncclGroupStart(), desc, "ncclGroupStart");
    for (int j = 0; j < P; ++j) {
      if (j == me) continue;
      if (send_bytes[j])
        nccl_check(ncclSend(send + send_offsets[j], send_bytes[j], ncclUint8, j, comm_, stream_),
                   desc, "ncclSend");
      if (recv_bytes[j])
        nccl_check(ncclRecv(recv + recv_offsets[j], recv_bytes[j], ncclUint8, j, comm_, stream_),
                   desc, "ncclRecv");
      sent += send_bytes[j], received += recv_bytes[j];
    }
    nccl_check(ncclGroupEnd(), desc, "ncclGroupEnd");
    count_traffic(sent, received, uint64_t(P - 1));
    complete(desc);
  }

  void do_allgatherv(const std::byte* send, size_t bytes, std::byte* recv,
                     std::span<const size_t> recv_bytes,
                     std::span<const size_t> recv_offsets) override {
    const int P = size(), me = rank();
    flush();
    set_device();
    size_t total = 0;
    bool uniform = true;  // equal blocks, back to back: one ncclAllGather
    for (int j = 0; j < P; ++j) {
      total += recv_bytes[j];
      uniform = uniform && recv_bytes[j] == recv_bytes[0] &&
                recv_offsets[j] == recv_offsets[0] + size_t(j) * recv_bytes[0];
    }
    std::string desc;
    if (uniform) {
      desc = "allgatherv (ncclAllGather)";
      if (bytes)
        nccl_check(ncclAllGather(send, recv + recv_offsets[0], bytes, ncclUint8, comm_, stream_),
                   desc, "ncclAllGather");
    } else {
      desc = "allgatherv (grouped ncclBroadcast)";
      nccl_check(ncclGroupStart(), desc, "ncclGroupStart");
      for (int j = 0; j < P; ++j) {
        if (!recv_bytes[j]) continue;  // every rank skips the same roots
        const void* src = j == me ? static_cast<const void*>(send) : recv + recv_offsets[j];
        nccl_check(ncclBroadcast(src, recv + recv_offsets[j], recv_bytes[j], ncclUint8, j, comm_,
                                 stream_),
                   desc, "ncclBroadcast");
      }
      nccl_check(ncclGroupEnd(), desc, "ncclGroupEnd");
    }
    count_traffic(bytes * uint64_t(P - 1), total - bytes, uint64_t(P - 1));
    complete(desc);
  }

  void do_allreduce(void* data, size_t n, ElemType type, ReduceOp op) override {
    const int P = size();
    if (n == 0) return;
    const std::string desc = "allreduce (ncclAllReduce)";
    flush();
    set_device();
    nccl_check(ncclAllReduce(data, data, n, nccl_type(type), op == ReduceOp::Sum ? ncclSum : ncclMax,
                             comm_, stream_),
               desc, "ncclAllReduce");
    const uint64_t ring = 2 * (n * elem_size(type)) * uint64_t(P - 1) / uint64_t(P);
    count_traffic(ring, ring, 2 * uint64_t(P - 1));
    complete(desc);
  }

  void do_broadcast(void* buf, size_t bytes, int root) override {
    const int P = size();
    if (bytes == 0) return;
    const std::string desc = fmt::format("broadcast from rank {} (ncclBroadcast)", root);
    flush();
    set_device();
    nccl_check(ncclBroadcast(buf, buf, bytes, ncclUint8, root, comm_, stream_), desc,
               "ncclBroadcast");
    if (rank() == root)
      count_traffic(bytes * uint64_t(P - 1), 0, uint64_t(P - 1));
    else
      count_traffic(0, bytes, 0);
    complete(desc);
  }

  void do_barrier() override {
    const std::string desc = "barrier (ncclAllReduce of one int)";
    flush();
    set_device();
    nccl_check(ncclAllReduce(flag_, flag_, 1, ncclInt32, ncclSum, comm_, stream_), desc,
               "ncclAllReduce");
    complete(desc);
  }

  std::unique_ptr<Communicator> do_split(int color, int key) override {
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
    const std::string desc = "split (ncclCommSplit)";
    flush();
    do_barrier();  // every rank is here (with a deadline) before the split
    set_device();
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclComm_t sub = nullptr;
    nccl_check(ncclCommSplit(comm_, color == kNoColor ? NCCL_SPLIT_NOCOLOR : color, key, &sub,
                             &config),
               desc, "ncclCommSplit");
    settle(comm_, desc, now_seconds() + timeout());
    if (color == kNoColor || sub == nullptr) return nullptr;
    settle(sub, desc, now_seconds() + timeout());
    int r = 0, s = 0;
    nccl_check(ncclCommUserRank(sub, &r), desc, "ncclCommUserRank");
    nccl_check(ncclCommCount(sub, &s), desc, "ncclCommCount");
    return std::make_unique<NcclComm>(sub, device_, r, s, world_rank());
#else
    (void)color, (void)key;
    unsupported("split (needs NCCL >= 2.18 for ncclCommSplit)");
#endif
  }

 private:
  struct Pending {
    bool send;
    void* buf;
    size_t bytes;
    int peer;
    NcclRequest* req;
  };

  std::unique_ptr<Request> queue(bool send, void* buf, size_t bytes, int peer, int tag) {
    auto req = std::make_unique<NcclRequest>(this, describe_p2p(send, peer, tag));
    pending_.push_back({send, buf, bytes, peer, req.get()});
    return req;
  }

  void set_device() {
    const cudaError_t e = cudaSetDevice(device_);
    if (e != cudaSuccess)
      fail(ErrorKind::Comm, "{}: cudaSetDevice({}): {}", who(), device_, cudaGetErrorString(e));
  }

  void cuda_check(cudaError_t e, const char* call) {
    if (e != cudaSuccess) raise(call, fmt::format(": CUDA error: {}", cudaGetErrorString(e)));
  }

  // An NCCL call: ncclInProgress is settled (enqueue finished) with timeout(); any other
  // failure aborts the communicator and throws.
  void nccl_check(ncclResult_t r, const std::string& desc, const char* call) {
    if (r == ncclInProgress) {
      settle(comm_, desc, now_seconds() + timeout());
      return;
    }
    if (r != ncclSuccess)
      raise(desc, fmt::format(": {} failed: {} ({})", call, ncclGetErrorString(r),
                              ncclGetLastError(comm_)));
  }

  // Polls ncclCommGetAsyncError(c) until it is no longer ncclInProgress.
  void settle(ncclComm_t c, const std::string& desc, double deadline) {
    const double t0 = now_seconds();
    for (int spins = 0;; ++spins) {
      ncclResult_t state = ncclInProgress;
      const ncclResult_t r = ncclCommGetAsyncError(c, &state);
      if (r != ncclSuccess) raise(desc, fmt::format(": NCCL error: {}", ncclGetErrorString(r)));
      if (state == ncclSuccess) return;
      if (state != ncclInProgress)
        raise(desc, fmt::format(": NCCL error: {} ({})", ncclGetErrorString(state),
                                ncclGetLastError(c)));
      const double t = now_seconds();
      if (t >= deadline) raise(desc, fmt::format(" timed out after {} s", timeout()));
      nap(spins, t - t0);
    }
  }

  std::shared_ptr<Event> record(const std::string& desc) {
    auto ev = std::make_shared<Event>();
    cuda_check(cudaEventCreateWithFlags(&ev->ev, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaEventRecord(ev->ev, stream_), "cudaEventRecord");
    (void)desc;
    return ev;
  }

  // Records an event after the collective just enqueued and waits for it (timeout()).
  void complete(const std::string& desc) {
    NcclRequest req(this, desc);
    req.launched(record(desc));
    req.wait(timeout());
  }

  void abort_comm() {
    if (failed_) return;
    failed_ = true;
    pending_.clear();
    ncclCommAbort(comm_);
  }

  ncclComm_t comm_;
  int device_;
  cudaStream_t stream_ = nullptr;
  int* flag_ = nullptr;  // device int of the barrier
  bool failed_ = false;
  std::vector<Pending> pending_;
  friend class NcclRequest;
};

NcclRequest::~NcclRequest() {
  if (!is_launched()) c_->forget(this);  // never launched: truly cancelled
}

bool NcclRequest::poll() {
  if (done_) return true;
  if (!is_launched()) c_->flush();
  if (!c_->query(*ev_, desc_)) return false;
  done_ = true;
  return true;
}

bool NcclRequest::do_test() {
  const double t0 = now_seconds();
  try {
    const bool r = poll();
    c_->add_wait_seconds(now_seconds() - t0);
    return r;
  } catch (...) {
    c_->add_wait_seconds(now_seconds() - t0);
    throw;
  }
}

void NcclRequest::do_wait_until(double deadline, double timeout_s) {
  if (done_) return;
  wait_polling([] { return now_seconds(); }, [&] { return poll(); }, deadline,
               [&](double s) { c_->add_wait_seconds(s); },
               [&] { c_->raise(desc_, fmt::format(" timed out after {} s", timeout_s)); });
}

}  // namespace

bool nccl_available() { return true; }

int nccl_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::unique_ptr<Communicator> nccl_world(Communicator& bootstrap, int device) {
  const std::string& who = bootstrap.who();
  const int ndev = nccl_device_count();
  if (ndev == 0) fail(ErrorKind::Comm, "{}: nccl_world: no CUDA device is available", who);
  if (device < 0) {
    const int local = local_rank_from_env();
    device = (local >= 0 ? local : bootstrap.rank()) % ndev;
  }
  if (device >= ndev)
    fail(ErrorKind::Comm, "{}: nccl_world: CUDA device {} does not exist ({} devices)", who,
         device, ndev);
  cudaError_t ce = cudaSetDevice(device);
  if (ce != cudaSuccess)
    fail(ErrorKind::Comm, "{}: nccl_world: cudaSetDevice({}): {}", who, device,
         cudaGetErrorString(ce));

  // Rank 0 makes the id; the bootstrap communicator (MPI_Ibcast under MPI) carries it.
  ncclUniqueId id{};
  if (bootstrap.rank() == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
      fail(ErrorKind::Comm, "{}: nccl_world: ncclGetUniqueId: {}", who, ncclGetErrorString(r));
  }
  bootstrap.broadcast(&id, sizeof(id), 0);

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns; completion is polled with a deadline
  ncclComm_t comm = nullptr;
  ncclResult_t r =
      ncclCommInitRankConfig(&comm, bootstrap.size(), id, bootstrap.rank(), &config);
  if (r != ncclSuccess && r != ncclInProgress)
    fail(ErrorKind::Comm, "{}: nccl_world: ncclCommInitRankConfig: {}", who,
         ncclGetErrorString(r));
  const double t0 = now_seconds(), deadline = t0 + bootstrap.timeout();
  for (int spins = 0;; ++spins) {
    ncclResult_t state = ncclInProgress;
    r = ncclCommGetAsyncError(comm, &state);
    if (r == ncclSuccess && state == ncclSuccess) break;
    if (r != ncclSuccess || state != ncclInProgress || now_seconds() >= deadline) {
      ncclCommAbort(comm);
      fail(ErrorKind::Comm, "{}: nccl_world: NCCL init {}", who,
           r != ncclSuccess       ? std::string(ncclGetErrorString(r))
           : state != ncclInProgress ? std::string(ncclGetErrorString(state))
                                     : fmt::format("timed out after {} s", bootstrap.timeout()));
    }
    nap(spins, now_seconds() - t0);
  }
  auto c = std::make_unique<NcclComm>(comm, device, bootstrap.rank(), bootstrap.size(),
                                      bootstrap.rank());
  c->set_timeout(bootstrap.timeout());
  return c;
}

}  // namespace tandem::comm
