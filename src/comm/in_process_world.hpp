#pragma once
// Shared state of an in-process world (internal to the in-process backend).
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace tandem::comm::inproc {

struct World;

// State of the ranks, shared by a world and all communicators split from it: the
// failure of any rank, and which ranks have returned. Both wake every waiter, so a
// receive that can no longer complete fails at once instead of at its timeout.
struct Abort {
  explicit Abort(int P) : finished(new std::atomic<bool>[P]) {
    for (int i = 0; i < P; ++i) finished[i] = false;
  }
  std::atomic<bool> flag{false};
  std::unique_ptr<std::atomic<bool>[]> finished;  // by world rank: its fn returned
  std::mutex m;
  int failed_rank = -1;             // world rank that failed first
  std::exception_ptr first_error;   // what it threw
  std::string message;
  std::vector<std::weak_ptr<World>> worlds;

  void raise(int failed_world_rank, std::exception_ptr error, std::string what);
  void finish(int world_rank);
  std::string describe();  // "peer rank R failed: <what>"

 private:
  void wake_all();
};

// A posted receive that has no message yet.
struct RecvSlot {
  void* buf = nullptr;
  size_t bytes = 0;
  bool done = false;
  std::string error;  // set instead of copying when sizes differ
};

// A message copy parked until its receive is posted. Its bytes come from malloc, not
// operator new: like an MPI library's eager buffers they belong to the transport, so
// tests that count the heap a rank's strategy allocates (operator new per thread, e.g.
// tests/parallel/comm_volume_test.cpp) see the strategy's buffers only.
class Parked {
 public:
  Parked(const std::byte* p, size_t bytes);
  Parked(Parked&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr, o.size_ = 0; }
  Parked(const Parked&) = delete;
  Parked& operator=(const Parked&) = delete;
  Parked& operator=(Parked&&) = delete;
  ~Parked();
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Messages from one source with one tag to one destination; the k-th send matches the
// k-th posted receive.
struct Channel {
  uint64_t sent = 0;
  uint64_t posted = 0;
  std::map<uint64_t, Parked> early;                         // sent, not yet received
  std::map<uint64_t, std::shared_ptr<RecvSlot>> waiting;    // posted, not yet sent
};

// Everything addressed to one rank. Only the owning rank's thread waits on cv.
struct Mailbox {
  std::mutex m;
  std::condition_variable cv;
  std::map<std::pair<int, int>, Channel> channels;  // key (src, tag)
};

struct World {
  std::vector<int> world_ranks;  // rank here -> rank in the root world
  std::shared_ptr<Abort> abort;
  std::vector<std::unique_ptr<Mailbox>> boxes;  // by destination rank

  struct PendingSplit {
    std::shared_ptr<World> world;
    int pending = 0;  // members that have not picked it up yet
  };
  std::mutex split_m;
  std::map<std::pair<uint64_t, int>, PendingSplit> splits;  // key (split number, color)

  static std::shared_ptr<World> create(std::vector<int> world_ranks, std::shared_ptr<Abort> abort);
};

}  // namespace tandem::comm::inproc
