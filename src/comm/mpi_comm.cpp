// MPI backend. Every operation is non-blocking underneath and waited with a deadline
// (MpiRequest). MPI counts are int: messages and collectives are cut into chunks of at
// most chunk_ bytes (1 GiB; TANDEM_MPI_CHUNK_BYTES overrides, for tests):
//   isend/irecv  one MPI message per chunk, same tag (MPI keeps their order)
//   alltoallv    MPI_Ialltoallw on MPI_BOTTOM with one derived type per peer block
//                (absolute addresses, chunked lengths): any size, one native call
//   allgatherv   MPI_Iallgatherv when the gathered total fits a chunk (every rank decides
//                alike from recv_bytes), else the generic algorithm over chunked isend
//   allreduce    MPI_Iallreduce per chunk of elements; broadcast: MPI_Ibcast per chunk
//   barrier      MPI_Ibarrier; split: a barrier with deadline, then MPI_Comm_split
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "comm/mpi_request.hpp"
#include "tandem/comm/mpi.hpp"
#include "tandem/core/error.hpp"

namespace tandem::comm {
namespace {

using mpi::Env;
using mpi::MpiRequest;

size_t chunk_from_env() {
  const char* e = std::getenv("TANDEM_MPI_CHUNK_BYTES");
  if (!e || !*e) return size_t{1} << 30;
  char* end = nullptr;
  long long v = std::strtoll(e, &end, 10);
  if (end == e || *end != '\0' || v < 1 || v > INT_MAX)
    bad_input("TANDEM_MPI_CHUNK_BYTES: expected a byte count in [1, {}], got '{}'", INT_MAX, e);
  return static_cast<size_t>(v);
}

MPI_Datatype mpi_type(ElemType t) {
  switch (t) {
    case ElemType::F32: return MPI_FLOAT;
    case ElemType::F64: return MPI_DOUBLE;
    case ElemType::I64: return MPI_INT64_T;
  }
  return MPI_DATATYPE_NULL;
}

class MpiComm final : public Communicator {
 public:
  MpiComm(std::shared_ptr<Env> env, MPI_Comm comm, int rank, int size, int world_rank,
          size_t chunk)
      : Communicator(rank, size, world_rank), env_(std::move(env)), comm_(comm), chunk_(chunk) {}

  ~MpiComm() override {
    if (!env_->failed.load()) MPI_Comm_free(&comm_);
  }

  std::string_view backend() const override { return "mpi"; }

 protected:
  std::unique_ptr<Request> do_isend(const void* buf, size_t bytes, int dst, int tag) override {
    auto req = make_request(describe_p2p(true, dst, tag), true);
    const auto* p = static_cast<const std::byte*>(buf);
    size_t off = 0;
    do {
      const size_t len = std::min(chunk_, bytes - off);
      MPI_Request r;
      check(*req, MPI_Isend(p + off, static_cast<int>(len), MPI_BYTE, dst, tag, comm_, &r));
      req->add(r);
      off += len;
    } while (off < bytes);
    return req;
  }

  std::unique_ptr<Request> do_irecv(void* buf, size_t bytes, int src, int tag) override {
    auto req = make_request(describe_p2p(false, src, tag), true);
    auto* p = static_cast<std::byte*>(buf);
    size_t off = 0;
    do {
      const size_t len = std::min(chunk_, bytes - off);
      MPI_Request r;
      check(*req, MPI_Irecv(p + off, static_cast<int>(len), MPI_BYTE, src, tag, comm_, &r));
      req->add(r, static_cast<long long>(len));
      off += len;
    } while (off < bytes);
    return req;
  }

  void do_alltoallv(const std::byte* send, std::span<const size_t> send_bytes,
                    std::span<const size_t> send_offsets, std::byte* recv,
                    std::span<const size_t> recv_bytes,
                    std::span<const size_t> recv_offsets) override {
    const int P = size();
    auto req = make_request("alltoallv (MPI_Ialltoallw)", false);
    std::vector<int> scounts(P), rcounts(P), zeros(P, 0);
    std::vector<MPI_Datatype> stypes(P), rtypes(P);
    uint64_t sent = 0, received = 0;
    for (int j = 0; j < P; ++j) {
      scounts[j] = block_type(*req, send + send_offsets[j], send_bytes[j], &stypes[j]);
      rcounts[j] = block_type(*req, recv + recv_offsets[j], recv_bytes[j], &rtypes[j]);
      if (j != rank()) sent += send_bytes[j], received += recv_bytes[j];
    }
    MPI_Request r;
    check(*req, MPI_Ialltoallw(MPI_BOTTOM, scounts.data(), zeros.data(), stypes.data(),
                               MPI_BOTTOM, rcounts.data(), zeros.data(), rtypes.data(), comm_, &r));
    req->add(r);
    count_traffic(sent, received, static_cast<uint64_t>(P - 1));
    req->wait(timeout());
  }

  void do_allgatherv(const std::byte* send, size_t bytes, std::byte* recv,
                     std::span<const size_t> recv_bytes,
                     std::span<const size_t> recv_offsets) override {
    const int P = size();
    size_t total = 0;
    for (size_t b : recv_bytes) total += b;
    if (total > chunk_) {  // same decision on every rank: recv_bytes are shared knowledge
      Communicator::do_allgatherv(send, bytes, recv, recv_bytes, recv_offsets);
      return;
    }
    // Displacements relative to the lowest offset; if they still overflow int, gather
    // into a packed buffer and copy out.
    size_t lo = *std::min_element(recv_offsets.begin(), recv_offsets.end()), hi = 0;
    for (int j = 0; j < P; ++j) hi = std::max(hi, recv_offsets[j] - lo + recv_bytes[j]);
    const bool packed = hi > static_cast<size_t>(INT_MAX);
    std::vector<std::byte> tmp(packed ? total : 0);
    std::vector<int> counts(P), displs(P);
    size_t pos = 0;
    for (int j = 0; j < P; ++j) {
      counts[j] = static_cast<int>(recv_bytes[j]);
      displs[j] = static_cast<int>(packed ? pos : recv_offsets[j] - lo);
      pos += recv_bytes[j];
    }
    std::byte* base = packed ? tmp.data() : recv + lo;
    std::byte* mine = recv + recv_offsets[rank()];
    const void* sbuf = send;
    if (!packed && send == mine) sbuf = MPI_IN_PLACE;
    auto req = make_request("allgatherv (MPI_Iallgatherv)", false);
    MPI_Request r;
    check(*req, MPI_Iallgatherv(sbuf, static_cast<int>(bytes), MPI_BYTE, base, counts.data(),
                                displs.data(), MPI_BYTE, comm_, &r));
    req->add(r);
    count_traffic(bytes * (P - 1), total - bytes, static_cast<uint64_t>(P - 1));
    req->wait(timeout());
    if (packed)
      for (int j = 0; j < P; ++j)
        if (recv_bytes[j]) std::memcpy(recv + recv_offsets[j], base + displs[j], recv_bytes[j]);
  }

  void do_allreduce(void* data, size_t n, ElemType type, ReduceOp op) override {
    if (size() == 1 || n == 0) return;
    do_iallreduce(data, n, type, op)->wait(timeout());
  }

  std::unique_ptr<Request> do_iallreduce(void* data, size_t n, ElemType type,
                                         ReduceOp op) override {
    const int P = size();
    auto req = make_request("allreduce (MPI_Iallreduce)", false);
    if (P == 1 || n == 0) return req;  // no MPI requests: complete
    const size_t es = elem_size(type), per = std::max<size_t>(1, chunk_ / es);
    auto* p = static_cast<std::byte*>(data);
    for (size_t off = 0; off < n; off += per) {
      const size_t cnt = std::min(per, n - off);
      MPI_Request r;
      check(*req, MPI_Iallreduce(MPI_IN_PLACE, p + off * es, static_cast<int>(cnt),
                                 mpi_type(type), op == ReduceOp::Sum ? MPI_SUM : MPI_MAX,
                                 comm_, &r));
      req->add(r);
    }
    const uint64_t ring = 2 * (n * es) * (P - 1) / P;  // volume of a ring allreduce
    count_traffic(ring, ring, 2 * static_cast<uint64_t>(P - 1));
    return req;
  }

  void do_broadcast(void* buf, size_t bytes, int root) override {
    const int P = size();
    if (P == 1) return;
    auto req = make_request(fmt::format("broadcast from rank {} (MPI_Ibcast)", root), false);
    auto* p = static_cast<std::byte*>(buf);
    for (size_t off = 0; off < bytes; off += chunk_) {
      MPI_Request r;
      check(*req, MPI_Ibcast(p + off, static_cast<int>(std::min(chunk_, bytes - off)), MPI_BYTE,
                             root, comm_, &r));
      req->add(r);
    }
    if (rank() == root)
      count_traffic(bytes * (P - 1), 0, static_cast<uint64_t>(P - 1));
    else
      count_traffic(0, bytes, 0);
    req->wait(timeout());
  }

  void do_barrier() override {
    auto req = make_request(fmt::format("{} (MPI_Ibarrier)", current_op()), false);
    MPI_Request r;
    check(*req, MPI_Ibarrier(comm_, &r));
    req->add(r);
    req->wait(timeout());
  }

  std::unique_ptr<Communicator> do_split(int color, int key) override {
    do_barrier();  // every rank is here (with a deadline); MPI_Comm_split itself has none
    auto req = make_request("split (MPI_Comm_split)", false);
    MPI_Comm sub = MPI_COMM_NULL;
    check(*req, MPI_Comm_split(comm_, color == kNoColor ? MPI_UNDEFINED : color, key, &sub));
    if (sub == MPI_COMM_NULL) return nullptr;
    check(*req, MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN));
    int r = 0, s = 0;
    MPI_Comm_rank(sub, &r);
    MPI_Comm_size(sub, &s);
    return std::make_unique<MpiComm>(env_, sub, r, s, world_rank(), chunk_);
  }

 private:
  std::unique_ptr<MpiRequest> make_request(std::string desc, bool cancelable) {
    return std::make_unique<MpiRequest>(env_, who(), std::move(desc), this,
                                        cancelable);
  }

  void check(MpiRequest& req, int rc) {
    if (rc != MPI_SUCCESS) req.raise(": MPI error: " + mpi::error_string(rc));
  }

  // A datatype for `bytes` at absolute address p, in blocks of at most chunk_ bytes;
  // returns the count to pass with it (0 for an empty block).
  int block_type(MpiRequest& req, const std::byte* p, size_t bytes, MPI_Datatype* type) {
    *type = MPI_BYTE;
    if (bytes == 0) return 0;
    const size_t nblocks = (bytes + chunk_ - 1) / chunk_;
    if (nblocks > static_cast<size_t>(INT_MAX)) req.raise(": block too large for MPI");
    std::vector<int> lens(nblocks);
    std::vector<MPI_Aint> displs(nblocks);
    for (size_t b = 0; b < nblocks; ++b) {
      lens[b] = static_cast<int>(std::min(chunk_, bytes - b * chunk_));
      check(req, MPI_Get_address(p + b * chunk_, &displs[b]));
    }
    check(req, MPI_Type_create_hindexed(static_cast<int>(nblocks), lens.data(), displs.data(),
                                        MPI_BYTE, type));
    check(req, MPI_Type_commit(type));
    req.keep_type(*type);
    return 1;
  }

  std::shared_ptr<Env> env_;
  MPI_Comm comm_;
  size_t chunk_;
};

}  // namespace

bool mpi_available() { return true; }

std::unique_ptr<Communicator> mpi_world(int* argc, char*** argv) {
  // One environment per process, shared by every world handed out while it lives.
  static std::mutex m;
  static std::weak_ptr<Env> current;
  std::lock_guard lock(m);
  auto env = current.lock();
  if (!env) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) fail(ErrorKind::Comm, "mpi_world: MPI was already finalized");
    env = std::make_shared<Env>();
    if (!inited) {
      // Open MPI's non-blocking all-reduce (iallreduce, the training's gradient) picks,
      // by default, an algorithm that took about 5x the blocking one's time on 2 ranks
      // here (1.6-2.2 s against 0.34 s for the small preset's gradient); the ring is the
      // bandwidth-optimal one. A user's setting stays.
      setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "ring", 0);
      int provided = 0;
      int rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
      if (rc != MPI_SUCCESS)
        fail(ErrorKind::Comm, "mpi_world: MPI_Init_thread failed: {}", mpi::error_string(rc));
      env->owns_init = true;
    }
    current = env;
  }
  const size_t chunk = chunk_from_env();
  MPI_Comm comm = MPI_COMM_NULL;
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  if (rc != MPI_SUCCESS)
    fail(ErrorKind::Comm, "mpi_world: MPI_Comm_dup failed: {}", mpi::error_string(rc));
  int rank = 0, size = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  return std::make_unique<MpiComm>(std::move(env), comm, rank, size, rank, chunk);
}

}  // namespace tandem::comm
