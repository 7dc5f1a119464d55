// MPI requests polled with MPI_Testall against a deadline, so every wait ends: the
// poll spins briefly, then yields, then sleeps in short naps (about 50 us late at most
// once a wait has lasted over 2 ms) so oversubscribed ranks leave each other the CPU.
#include "comm/mpi_request.hpp"
#include "comm/poll_wait.hpp"

#include <exception>
#include <thread>

#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::comm::mpi {

Env::~Env() {
  if (!owns_init || failed.load() || std::uncaught_exceptions() > 0) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::string error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error code {}", rc);
  return std::string(buf, static_cast<size_t>(len));
}

MpiRequest::~MpiRequest() {
  if (done_) return;
  if (env_->failed.load()) return;  // leave MPI alone: the process is going down
  if (cancelable_) {
    for (auto& r : reqs_) {
      if (r == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&r);
      MPI_Request_free(&r);
    }
    release_types();
  }
  // A pending non-blocking collective can be neither cancelled nor freed; it only
  // happens on error paths, where the communicator is abandoned.
}

void MpiRequest::add(MPI_Request r, long long expected_bytes) {
  reqs_.push_back(r);
  expected_.push_back(expected_bytes);
}

void MpiRequest::raise(const std::string& what) {
  env_->failed.store(true);
  fail(ErrorKind::Comm, "{}: {}{}", who_, desc_, what);
}

void MpiRequest::release_types() {
  for (auto& t : types_) MPI_Type_free(&t);
  types_.clear();
}

bool MpiRequest::poll() {
  if (done_) return true;
  int flag = 0;
  std::vector<MPI_Status> st(reqs_.size());
  int rc = MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &flag, st.data());
  if (rc == MPI_ERR_IN_STATUS) {
    for (auto& s : st)
      if (s.MPI_ERROR != MPI_SUCCESS && s.MPI_ERROR != MPI_ERR_PENDING)
        raise(": MPI error: " + error_string(s.MPI_ERROR));
  }
  if (rc != MPI_SUCCESS) raise(": MPI error: " + error_string(rc));
  if (!flag) return false;
  done_ = true;
  release_types();
  for (size_t i = 0; i < st.size(); ++i) {
    if (expected_[i] < 0) continue;
    int count = 0;
    MPI_Get_count(&st[i], MPI_BYTE, &count);
    if (count != expected_[i])
      raise(fmt::format(": message of {} bytes, receive expects {} bytes (chunk {})", count,
                        expected_[i], i));
  }
  return true;
}

// Time inside a test is communication the caller did not overlap (with shared-memory
// single copy, the copy itself runs inside the MPI call that progresses it): it counts
// as waiting, so the hidden fraction of a run stays honest.
bool MpiRequest::do_test() {
  if (done_) return true;
  const double t0 = now_seconds();
  try {
    const bool finished = poll();
    comm_->add_wait_seconds(now_seconds() - t0);
    return finished;
  } catch (...) {
    comm_->add_wait_seconds(now_seconds() - t0);
    throw;
  }
}

void MpiRequest::do_wait_until(double deadline, double timeout_s) {
  if (done_) return;
  wait_polling([] { return now_seconds(); }, [&] { return poll(); }, deadline,
               [&](double s) { comm_->add_wait_seconds(s); },
               [&] { raise(fmt::format(" timed out after {} s", timeout_s)); });
}

}  // namespace tandem::comm::mpi
