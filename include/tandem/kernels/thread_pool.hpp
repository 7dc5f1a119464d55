#pragma once
// A persistent pool of worker threads: created once, reused by every op.
#include <cstdint>
#include <functional>
#include <utility>

namespace tandem::kernels {

class ThreadPool {
 public:
  // n_threads >= 1. Starts n_threads - 1 workers; the calling thread is thread 0.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;
  // Runs fn(tid, nth) once on every thread (tid 0 on the caller) and returns when all
  // are done. An exception thrown by any fn is rethrown here (the first one).
  void run(const std::function<void(int tid, int nth)>& fn);

 private:
  struct Impl;
  Impl* impl_;
};

// Contiguous part tid of [0, n) split into nth near-equal parts: [begin, end).
inline std::pair<int64_t, int64_t> split_range(int64_t n, int tid, int nth) {
  const int64_t base = n / nth, rem = n % nth;
  const int64_t begin = tid * base + (tid < rem ? tid : rem);
  return {begin, begin + base + (tid < rem ? 1 : 0)};
}

}  // namespace tandem::kernels
