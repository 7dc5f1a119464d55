#include "tandem/kernels/thread_pool.hpp"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/spin.hpp"
#include "tandem/core/error.hpp"

namespace tandem::kernels {
namespace {

// Waiting threads spin (kernels/spin.hpp) and block once the spin budget is spent.
constexpr int kSpins = 1 << 13;

// Spins until pred() or the spin budget runs out; returns pred().
template <typename Pred>
bool spin_until(Pred pred) {
  for (int i = 1; i <= kSpins; ++i) {
    if (pred()) return true;
    detail::spin_step(i);
  }
  return pred();
}

}  // namespace

struct ThreadPool::Impl {
  int n = 1;
  std::vector<std::thread> workers;

  const std::function<void(int, int)>* fn = nullptr;
  std::atomic<uint64_t> gen{0};   // bumped once per run (and once to stop)
  std::atomic<int> pending{0};    // workers still running the current fn
  std::atomic<bool> stop{false};  // set before the final bump of gen
  // Sleepers announce themselves (seq_cst, then re-check under the mutex), so the
  // other side only takes the mutex and notifies when someone may be asleep.
  std::atomic<int> start_sleepers{0};
  std::atomic<bool> caller_sleeping{false};

  std::mutex start_mu;
  std::condition_variable start_cv;
  std::mutex done_mu;
  std::condition_variable done_cv;
  std::mutex err_mu;
  std::exception_ptr err;
  std::mutex run_mu;  // serializes concurrent run() callers

  void call(int tid) {
    try {
      (*fn)(tid, n);
    } catch (...) {
      std::lock_guard lk(err_mu);
      if (!err) err = std::current_exception();
    }
  }

  void worker(int tid) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = 0;
      auto started = [&] { return (g = gen.load()) != seen; };
      if (!spin_until(started)) {
        std::unique_lock lk(start_mu);
        start_sleepers.fetch_add(1);
        start_cv.wait(lk, started);
        start_sleepers.fetch_sub(1);
      }
      seen = g;
      // stop was stored before the bump that we acquired above
      if (stop.load(std::memory_order_relaxed)) return;
      call(tid);
      if (pending.fetch_sub(1) == 1 && caller_sleeping.load()) {
        std::lock_guard lk(done_mu);
        done_cv.notify_one();
      }
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : impl_(new Impl) {
  TD_CHECK(n_threads >= 1);
  impl_->n = n_threads;
  impl_->workers.reserve(size_t(n_threads - 1));
  for (int t = 1; t < n_threads; ++t) impl_->workers.emplace_back([this, t] { impl_->worker(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lk(impl_->start_mu);
    impl_->stop.store(true, std::memory_order_relaxed);
    impl_->gen.fetch_add(1, std::memory_order_release);
  }
  impl_->start_cv.notify_all();
  for (auto& w : impl_->workers) w.join();
  delete impl_;
}

int ThreadPool::size() const { return impl_->n; }

void ThreadPool::run(const std::function<void(int tid, int nth)>& fn) {
  Impl& p = *impl_;
  if (p.n == 1) {
    fn(0, 1);
    return;
  }
  std::lock_guard run_lock(p.run_mu);
  p.fn = &fn;
  p.err = nullptr;
  p.pending.store(p.n - 1, std::memory_order_relaxed);
  p.gen.fetch_add(1);
  if (p.start_sleepers.load() > 0) {
    { std::lock_guard lk(p.start_mu); }
    p.start_cv.notify_all();
  }

  p.call(0);

  auto done = [&] { return p.pending.load() == 0; };
  if (!spin_until(done)) {
    std::unique_lock lk(p.done_mu);
    p.caller_sleeping.store(true);
    p.done_cv.wait(lk, done);
    p.caller_sleeping.store(false);
  }
  p.fn = nullptr;
  if (p.err) {
    std::exception_ptr e = p.err;
    p.err = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace tandem::kernels
