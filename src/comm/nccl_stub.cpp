// Built instead of the NCCL backend when CUDA or NCCL was not found.
#include "tandem/comm/nccl.hpp"
#include "tandem/core/error.hpp"

namespace tandem::comm {

bool nccl_available() { return false; }

int nccl_device_count() { return 0; }

std::unique_ptr<Communicator> nccl_world(Communicator& bootstrap, int) {
  fail(ErrorKind::Comm, "{}: nccl_world: tandem was built without NCCL (the CUDA toolkit or "
                        "NCCL was not found at configure time, or TANDEM_WITH_NCCL=OFF)",
       bootstrap.who());
}

}  // namespace tandem::comm
