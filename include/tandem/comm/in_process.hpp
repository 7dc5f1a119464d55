#pragma once
// In-process backend: P ranks as threads of one process, for tests and for users
// without MPI. Messages are copied through per-destination mailboxes.
#include <functional>
#include <memory>

#include "tandem/comm/communicator.hpp"

namespace tandem::comm {

// Creates an in-process world of P ranks and runs fn(comm) on P threads, each with its
// rank's communicator. When fn throws on one rank, the waits of the other ranks fail at
// once ("peer rank R failed") instead of running into their timeouts; so does a receive
// from a rank whose fn has returned without sending it. After all threads end, rethrows
// the first exception thrown (the cause, not the errors it provoked). Peer ranks named in
// these messages are ranks of this world (sub-communicators name their members' world rank).
void run_in_process(int P, const std::function<void(Communicator&)>& fn);

// A one-rank in-process communicator, for a single rank that needs no thread: its
// collectives return at once with its own data.
std::unique_ptr<Communicator> in_process_single();

}  // namespace tandem::comm
