#pragma once
// Private: the wait of a polled request, shared by the MPI and NCCL backends.
#include <chrono>
#include <thread>

namespace tandem::comm {

// Between polls: spin 64 times, then yield for 2 ms, then sleep 20 us at a time.
inline void nap(int spins, double waited) {
  if (spins < 64) return;
  if (waited < 0.002)
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::microseconds(20));
}

// Calls poll() until it returns true. At `deadline` (now() seconds) calls timed_out(),
// which must throw. The time waited is added to wait_seconds however the wait ends.
template <class Now, class Poll, class TimedOut>
void wait_polling(Now now, Poll poll, double deadline, double& wait_seconds, TimedOut timed_out) {
  const double t0 = now();
  for (int spins = 0;; ++spins) {
    bool finished;
    try {
      finished = poll();
    } catch (...) {
      wait_seconds += now() - t0;
      throw;
    }
    if (finished) break;
    const double t = now();
    if (t >= deadline) {
      wait_seconds += t - t0;
      timed_out();
    }
    nap(spins, t - t0);
  }
  wait_seconds += now() - t0;
}

}  // namespace tandem::comm
