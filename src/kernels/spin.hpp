#pragma once
// Private: how threads of the kernels wait for each other briefly. They spin (the waits
// are short and back to back), yielding now and then so that threads outnumbering the
// cores still make progress.
#include <thread>

namespace tandem::kernels::detail {

inline constexpr int kYieldEvery = 32;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// One step of a spin-wait: the i-th check (from 1) pauses, or yields every kYieldEvery.
inline void spin_step(int i) {
  if (i % kYieldEvery == 0)
    std::this_thread::yield();
  else
    cpu_relax();
}

}  // namespace tandem::kernels::detail
