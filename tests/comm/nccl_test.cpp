// NCCL backend: the collectives and point-to-point on device buffers, on as many GPUs
// as this machine has (one rank per GPU, ranks as threads bootstrapped by the
// in-process backend). Skips without the NCCL backend or without a GPU.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "tandem/comm/in_process.hpp"
#include "tandem/comm/nccl.hpp"
#include "tandem/core/error.hpp"

#ifdef TANDEM_HAVE_NCCL
#include <cuda_runtime.h>
#endif

namespace tandem::comm {
namespace {

TEST(Nccl, StubOrWorldReportsClearly) {
  if (nccl_available() && nccl_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  // Without the backend or a GPU, nccl_world fails loudly (Error(Comm)), never silently.
  run_in_process(1, [](Communicator& boot) {
    try {
      (void)nccl_world(boot);
      ADD_FAILURE() << "nccl_world should have failed";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Comm) << e.what();
      EXPECT_NE(std::string(e.what()).find("rank 0"), std::string::npos) << e.what();
    }
  });
}

#ifdef TANDEM_HAVE_NCCL

// Device buffer of floats, copied from / to host vectors.
struct DevBuf {
  float* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(float)), cudaSuccess);
  }
  ~DevBuf() { cudaFree(p); }
  void put(const std::vector<float>& h) {
    ASSERT_EQ(cudaMemcpy(p, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  std::vector<float> get() const {
    std::vector<float> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

void checks(Communicator& c) {
  const int P = c.size(), r = c.rank();
  const size_t n = 1000;
  {  // allreduce sum and max
    DevBuf b(n);
    std::vector<float> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = float(r + 1) * float(i);
    b.put(h);
    c.allreduce(b.p, n, ReduceOp::Sum);
    const auto s = b.get();
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(s[i], float(P * (P + 1) / 2) * float(i));
    b.put(h);
    c.allreduce(b.p, n, ReduceOp::Max);
    const auto m = b.get();
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(m[i], float(P) * float(i));
  }
  {  // broadcast from the last rank
    DevBuf b(n);
    b.put(std::vector<float>(n, float(r)));
    c.broadcast(b.p, n * sizeof(float), P - 1);
    for (float x : b.get()) ASSERT_EQ(x, float(P - 1));
  }
  {  // allgatherv with uneven blocks: rank j gives j+1 floats of value j
    std::vector<size_t> bytes(P), offs(P);
    size_t total = 0;
    for (int j = 0; j < P; ++j) offs[j] = total * sizeof(float), bytes[j] = (j + 1) * sizeof(float), total += j + 1;
    DevBuf mine(r + 1), all(total);
    mine.put(std::vector<float>(r + 1, float(r)));
    c.allgatherv(mine.p, bytes[r], all.p, bytes, offs);
    const auto h = all.get();
    for (int j = 0; j < P; ++j)
      for (int k = 0; k <= j; ++k) ASSERT_EQ(h[offs[j] / sizeof(float) + k], float(j));
  }
  {  // alltoallv: rank r sends (r, j) to rank j
    std::vector<size_t> b(P, sizeof(float)), o(P);
    for (int j = 0; j < P; ++j) o[j] = j * sizeof(float);
    DevBuf s(P), d(P);
    std::vector<float> h(P);
    for (int j = 0; j < P; ++j) h[j] = float(100 * r + j);
    s.put(h);
    c.alltoallv(s.p, b, o, d.p, b, o);
    const auto g = d.get();
    for (int j = 0; j < P; ++j) ASSERT_EQ(g[j], float(100 * j + r));
  }
  {  // ring isend/irecv, launched together at the wait
    DevBuf s(n), d(n);
    s.put(std::vector<float>(n, float(r)));
    auto rs = c.isend(s.p, n * sizeof(float), (r + 1) % P, 3);
    auto rr = c.irecv(d.p, n * sizeof(float), (r + P - 1) % P, 3);
    (void)rr->test();  // launches both as one group
    c.wait(*rr);
    c.wait(*rs);
    for (float x : d.get()) ASSERT_EQ(x, float((r + P - 1) % P));
  }
  c.barrier();
  {  // split into even and odd ranks
    auto sub = c.split(r % 2, r);
    ASSERT_TRUE(sub);
    DevBuf b(1);
    b.put({1.0f});
    sub->allreduce(b.p, 1, ReduceOp::Sum);
    EXPECT_EQ(b.get()[0], float(sub->size()));
  }
}

TEST(Nccl, CollectivesAndRingOnDeviceBuffers) {
  const int ndev = nccl_device_count();
  if (ndev == 0) GTEST_SKIP() << "no CUDA device";
  for (int P = 1; P <= std::min(ndev, 4); ++P) {
    SCOPED_TRACE(P);
    run_in_process(P, [](Communicator& boot) {
      auto c = nccl_world(boot, boot.rank());
      EXPECT_EQ(c->backend(), "nccl");
      EXPECT_EQ(c->rank(), boot.rank());
      checks(*c);
    });
  }
}

#endif  // TANDEM_HAVE_NCCL

}  // namespace
}  // namespace tandem::comm
