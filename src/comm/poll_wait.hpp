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
// which must throw. The time waited goes to waited(seconds) however the wait ends.
template <class Now, class Poll, class Waited, class TimedOut>
void wait_polling(Now now, Poll poll, double deadline, Waited waited, TimedOut timed_out) {
  const double t0 = now();
  for (int spins = 0;; ++spins) {
    bool finished;
    try {
      finished = poll();
    } catch (...) {
      waited(now() - t0);
      throw;
    }
    if (finished) break;
    const double t = now();
    if (t >= deadline) {
      waited(t - t0);
      timed_out();
    }
    nap(spins, t - t0);
  }
  waited(now() - t0);
}

}  // namespace tandem::comm
