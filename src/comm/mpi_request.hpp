#pragma once
// Internal to the MPI backend: the process-wide MPI environment (finalize guard) and a
// Request over one or more MPI requests, polled with a deadline.
#include <mpi.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "tandem/comm/communicator.hpp"

namespace tandem::comm::mpi {

// Shared by every MPI communicator; MPI_Finalize runs when the last one goes, unless a
// communication error happened (pending requests to a dead or stalled peer could make
// MPI_Finalize hang: the process exits non-zero instead and mpirun ends the job).
struct Env {
  bool owns_init = false;
  std::atomic<bool> failed{false};
  ~Env();
};

std::string error_string(int rc);

// One logical operation: a point-to-point message (possibly in several chunks) or a
// native non-blocking collective (possibly in several chunks).
class MpiRequest final : public Request {
 public:
  // `comm` (which counts the time waited) must outlive the request.
  MpiRequest(std::shared_ptr<Env> env, std::string who, std::string desc, Communicator* comm,
             bool cancelable)
      : env_(std::move(env)), who_(std::move(who)), desc_(std::move(desc)), comm_(comm),
        cancelable_(cancelable) {}
  ~MpiRequest() override;

  // Adds one MPI request; a receive gives the byte count it must get (-1: not checked).
  void add(MPI_Request r, long long expected_bytes = -1);
  // Keeps a derived datatype alive until the operation is done.
  void keep_type(MPI_Datatype t) { types_.push_back(t); }
  // Throws Error(Comm) "<who>: <desc><what>" (what starts with ": " or " "), after
  // marking the environment failed.
  [[noreturn]] void raise(const std::string& what);

 protected:
  bool do_test() override;
  void do_wait_until(double deadline, double timeout_s) override;

 private:
  bool poll();
  void release_types();

  std::shared_ptr<Env> env_;
  std::string who_, desc_;
  Communicator* comm_;
  bool cancelable_;
  bool done_ = false;
  std::vector<MPI_Request> reqs_;
  std::vector<long long> expected_;
  std::vector<MPI_Datatype> types_;
};

}  // namespace tandem::comm::mpi
