#pragma once
// In-process backend: P ranks as threads of one process, for tests and for users
// without MPI. Messages are copied through per-destination mailboxes.
#include <functional>

#include "tandem/comm/communicator.hpp"

namespace tandem::comm {

// Creates an in-process world of P ranks and runs fn(comm) on P threads, each with its
// rank's communicator. When fn throws on one rank, the waits of the other ranks fail at
// once ("peer rank R failed") instead of running into their timeouts. After all threads
// end, rethrows the first exception thrown (the cause, not the errors it provoked).
void run_in_process(int P, const std::function<void(Communicator&)>& fn);

}  // namespace tandem::comm
