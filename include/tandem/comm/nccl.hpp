#pragma once
// NCCL backend (GPUs): one rank per GPU. Compiled only when CMake finds the CUDA
// toolkit and NCCL (then TANDEM_HAVE_NCCL is defined for users of tandem_comm); without
// them, nccl_world() throws Error(Comm) "built without NCCL".
//
// Memory: every buffer handed to an NCCL communicator (isend/irecv, the collectives)
// must be DEVICE memory of the communicator's GPU (cudaMalloc), not host memory. The
// CPU strategies (parallel/) pass host memory, so they run on the in-process and MPI
// backends; using this backend from them needs GPU attention kernels first. Sizes,
// offsets and ranks stay host values as in every backend.
//
// Differences from the MPI backend, by NCCL's design:
//   - Point-to-point messages between two ranks match in order, not by tag: the k-th
//     send from A to B meets the k-th receive on B from A. Callers must post them in
//     the same order on both sides (tags are checked only for range).
//   - isend/irecv are queued and launched together as one NCCL group at the next
//     test(), wait or collective of the communicator (so a ring's send and receive
//     never deadlock each other). A launched operation cannot be cancelled: destroying
//     its request before completion leaves it running on the GPU.
//   - Every wait polls a CUDA event against its deadline; on a timeout or an NCCL
//     error the communicator is aborted (ncclCommAbort) and the wait throws
//     Error(Comm) naming the rank and operation.
// All-to-all(v) is grouped ncclSend/ncclRecv, all-gather(v) ncclAllGather (equal
// blocks) or grouped ncclBroadcast, all-reduce ncclAllReduce, broadcast ncclBroadcast,
// barrier an all-reduce of one int, split ncclCommSplit (NCCL >= 2.18; older NCCL:
// split is unsupported and fails loudly).
#include <memory>

#include "tandem/comm/communicator.hpp"

namespace tandem::comm {

// True when this build has the NCCL backend.
bool nccl_available();

// CUDA devices this process can use (0 without the NCCL backend or without a driver).
int nccl_device_count();

// Collective over `bootstrap` (usually mpi_world(); any backend works, the in-process
// one included): rank 0 makes the ncclUniqueId and broadcasts it to the others, then
// every rank joins an NCCL communicator of the same rank and size on CUDA device
// `device` (-1: the node-local rank from OMPI_COMM_WORLD_LOCAL_RANK, else bootstrap's
// rank, modulo the device count). Init waits at most bootstrap.timeout() seconds.
std::unique_ptr<Communicator> nccl_world(Communicator& bootstrap, int device = -1);

}  // namespace tandem::comm
