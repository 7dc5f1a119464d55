#pragma once
// MPI backend: one process per rank, started by mpirun. Compiled only when the library
// was built with MPI (then TANDEM_HAVE_MPI is defined for users of tandem_comm); without
// it, mpi_world() throws Error(Comm) "built without MPI".
#include <memory>

#include "tandem/comm/communicator.hpp"

namespace tandem::comm {

// True when this build has the MPI backend.
bool mpi_available();

// Initializes MPI (MPI_Init_thread, unless already initialized) and returns a
// communicator over a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN. MPI errors
// become Error(Comm) with MPI_Error_string's text. MPI_Finalize runs when the last
// communicator derived from it is destroyed (it is the finalize guard), except after a
// communication error or while an exception unwinds: then the process must exit
// non-zero and mpirun tears the job down.
std::unique_ptr<Communicator> mpi_world(int* argc, char*** argv);

}  // namespace tandem::comm
