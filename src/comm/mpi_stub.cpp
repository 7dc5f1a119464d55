// Built instead of the MPI backend when the library has no MPI.
#include "tandem/comm/mpi.hpp"
#include "tandem/core/error.hpp"

namespace tandem::comm {

bool mpi_available() { return false; }

std::unique_ptr<Communicator> mpi_world(int*, char***) {
  fail(ErrorKind::Comm, "mpi_world: tandem was built without MPI (TANDEM_WITH_MPI=OFF or MPI "
                        "not found); use the in-process backend or rebuild with MPI");
}

}  // namespace tandem::comm
