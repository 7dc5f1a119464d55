// In-process backend: ranks are threads; each destination rank has a mailbox of
// channels keyed by (source, tag). The k-th send on a channel matches the k-th receive
// posted on it, so order per (src, dst, tag) is kept and sends may come before receives:
// a send finds its receive already posted (copies straight into its buffer) or parks a
// copy of the message until the receive comes. Sends complete at once.
#include "tandem/comm/in_process.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <new>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/in_process_world.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::comm {
namespace inproc {

Parked::Parked(const std::byte* p, size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  data_ = static_cast<std::byte*>(std::malloc(bytes));
  if (!data_) throw std::bad_alloc();
  std::memcpy(data_, p, bytes);
}

Parked::~Parked() { std::free(data_); }

void Abort::raise(int failed_world_rank, std::exception_ptr error, std::string what) {
  {
    std::lock_guard lock(m);
    if (flag.load()) return;
    failed_rank = failed_world_rank;
    first_error = std::move(error);
    message = std::move(what);
    flag.store(true);
  }
  wake_all();
}

void Abort::finish(int world_rank) {
  finished[world_rank].store(true);
  wake_all();
}

void Abort::wake_all() {
  std::vector<std::shared_ptr<World>> to_wake;
  {
    std::lock_guard lock(m);
    for (auto& w : worlds)
      if (auto s = w.lock()) to_wake.push_back(std::move(s));
  }
  for (auto& w : to_wake) {
    for (auto& box : w->boxes) {
      std::lock_guard lock(box->m);
      box->cv.notify_all();
    }
  }
}

std::string Abort::describe() {
  std::lock_guard lock(m);
  return fmt::format("peer rank {} failed: {}", failed_rank, message);
}

std::shared_ptr<World> World::create(std::vector<int> world_ranks, std::shared_ptr<Abort> abort) {
  auto w = std::make_shared<World>();
  w->world_ranks = std::move(world_ranks);
  w->abort = std::move(abort);
  for (size_t i = 0; i < w->world_ranks.size(); ++i) w->boxes.push_back(std::make_unique<Mailbox>());
  std::lock_guard lock(w->abort->m);
  auto& ws = w->abort->worlds;
  ws.erase(std::remove_if(ws.begin(), ws.end(), [](auto& x) { return x.expired(); }), ws.end());
  ws.push_back(w);
  return w;
}

}  // namespace inproc

namespace {

using inproc::Abort;
using inproc::Mailbox;
using inproc::RecvSlot;
using inproc::World;

class DoneRequest final : public Request {
 protected:
  bool do_test() override { return true; }
  void do_wait_until(double, double) override {}
};

class RecvRequest final : public Request {
 public:
  RecvRequest(std::shared_ptr<World> world, int dst, std::pair<int, int> key, uint64_t seq,
              std::shared_ptr<RecvSlot> slot, std::string who, std::string desc, Communicator* comm)
      : world_(std::move(world)), dst_(dst), key_(key), seq_(seq), slot_(std::move(slot)),
        who_(std::move(who)), desc_(std::move(desc)), comm_(comm) {}

  ~RecvRequest() override {
    if (finished_) return;
    Mailbox& box = *world_->boxes[dst_];
    std::lock_guard lock(box.m);
    if (!slot_->done) box.channels[key_].waiting.erase(seq_);  // cancel: no late writes
  }

  bool do_test() override {
    Mailbox& box = *world_->boxes[dst_];
    std::unique_lock lock(box.m);
    return check_locked();
  }

  void do_wait_until(double deadline, double timeout_s) override {
    if (finished_) return;
    Mailbox& box = *world_->boxes[dst_];
    const double t0 = now_seconds();
    std::unique_lock lock(box.m);
    auto until = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                     std::chrono::duration<double>(std::max(0.0, deadline - t0)));
    box.cv.wait_until(lock, until, [&] {
      return slot_->done || world_->abort->flag.load() || src_finished();
    });
    comm_->add_wait_seconds(now_seconds() - t0);
    if (!check_locked())
      fail(ErrorKind::Comm, "{}: {} timed out after {} s", who_, desc_, timeout_s);
  }

 private:
  // With the mailbox locked: true when done, throws on error or a failed peer.
  bool check_locked() {
    if (finished_) return true;
    if (slot_->done) {
      finished_ = true;
      if (!slot_->error.empty()) fail(ErrorKind::Comm, "{}: {}: {}", who_, desc_, slot_->error);
      return true;
    }
    if (world_->abort->flag.load())
      fail(ErrorKind::Comm, "{}: {}: {}", who_, desc_, world_->abort->describe());
    if (src_finished())  // its sends complete at once: nothing more can come
      fail(ErrorKind::Comm, "{}: {}: peer rank {} returned without sending this message", who_,
           desc_, world_->world_ranks[key_.first]);
    return false;
  }

  bool src_finished() const { return world_->abort->finished[world_->world_ranks[key_.first]].load(); }

  std::shared_ptr<World> world_;
  int dst_;
  std::pair<int, int> key_;
  uint64_t seq_;
  std::shared_ptr<RecvSlot> slot_;
  std::string who_, desc_;
  Communicator* comm_;  // counts the time waited; outlives the request
  bool finished_ = false;
};

std::string size_mismatch(size_t sent, size_t expected) {
  return fmt::format("message of {} bytes, receive expects {} bytes", sent, expected);
}

class InProcComm final : public Communicator {
 public:
  InProcComm(std::shared_ptr<World> world, int rank)
      : Communicator(rank, static_cast<int>(world->boxes.size()), world->world_ranks[rank]),
        world_(std::move(world)) {}

  std::string_view backend() const override { return "in-process"; }

 protected:
  std::unique_ptr<Request> do_isend(const void* buf, size_t bytes, int dst, int tag) override {
    throw_if_aborted(describe_p2p(true, dst, tag));
    Mailbox& box = *world_->boxes[dst];
    {
      std::lock_guard lock(box.m);
      auto& ch = box.channels[{rank(), tag}];
      const uint64_t seq = ch.sent++;
      auto it = ch.waiting.find(seq);
      if (it != ch.waiting.end()) {
        RecvSlot& slot = *it->second;
        if (slot.bytes == bytes) {
          if (bytes) std::memcpy(slot.buf, buf, bytes);
        } else {
          slot.error = size_mismatch(bytes, slot.bytes);
        }
        slot.done = true;
        ch.waiting.erase(it);
      } else {
        const auto* p = static_cast<const std::byte*>(buf);
        ch.early.emplace(seq, inproc::Parked(p, bytes));
      }
    }
    box.cv.notify_all();
    return std::make_unique<DoneRequest>();
  }

  std::unique_ptr<Request> do_irecv(void* buf, size_t bytes, int src, int tag) override {
    std::string desc = describe_p2p(false, src, tag);
    throw_if_aborted(desc);
    Mailbox& box = *world_->boxes[rank()];
    auto slot = std::make_shared<RecvSlot>();
    slot->buf = buf;
    slot->bytes = bytes;
    const std::pair<int, int> key{src, tag};
    uint64_t seq;
    {
      std::lock_guard lock(box.m);
      auto& ch = box.channels[key];
      seq = ch.posted++;
      auto it = ch.early.find(seq);
      if (it != ch.early.end()) {
        if (it->second.size() == bytes) {
          if (bytes) std::memcpy(buf, it->second.data(), bytes);
        } else {
          slot->error = size_mismatch(it->second.size(), bytes);
        }
        slot->done = true;
        ch.early.erase(it);
      } else {
        ch.waiting.emplace(seq, slot);
      }
    }
    return std::make_unique<RecvRequest>(world_, rank(), key, seq, std::move(slot), who(),
                                         std::move(desc), this);
  }

  // Ranks gather (color, key); each group's World is made by the first member to get
  // there and kept in the parent's registry until every member has picked it up.
  std::unique_ptr<Communicator> do_split(int color, int key) override {
    const int P = size();
    std::vector<int64_t> all(2 * static_cast<size_t>(P));
    all[2 * rank()] = color;
    all[2 * rank() + 1] = key;
    std::vector<size_t> bytes(P, 2 * sizeof(int64_t)), offsets(P);
    for (int i = 0; i < P; ++i) offsets[i] = i * 2 * sizeof(int64_t);
    auto* base = reinterpret_cast<std::byte*>(all.data());
    do_allgatherv(base + offsets[rank()], bytes[rank()], base, bytes, offsets);
    const uint64_t seq = split_seq_++;
    if (color == kNoColor) return nullptr;
    std::vector<std::pair<int64_t, int>> members;  // (key, parent rank)
    for (int i = 0; i < P; ++i)
      if (all[2 * i] == color) members.emplace_back(all[2 * i + 1], i);
    std::sort(members.begin(), members.end());
    int sub_rank = 0;
    std::vector<int> world_ranks;
    for (size_t i = 0; i < members.size(); ++i) {
      if (members[i].second == rank()) sub_rank = static_cast<int>(i);
      world_ranks.push_back(world_->world_ranks[members[i].second]);
    }
    std::shared_ptr<World> sub;
    {
      std::lock_guard lock(world_->split_m);
      auto& entry = world_->splits[{seq, color}];
      if (!entry.world) {
        entry.world = World::create(world_ranks, world_->abort);
        entry.pending = static_cast<int>(members.size());
      }
      sub = entry.world;
      if (--entry.pending == 0) world_->splits.erase({seq, color});
    }
    return std::make_unique<InProcComm>(std::move(sub), sub_rank);
  }

 private:
  void throw_if_aborted(const std::string& desc) const {
    if (world_->abort->flag.load())
      fail(ErrorKind::Comm, "{}: {}: {}", who(), desc, world_->abort->describe());
  }

  std::shared_ptr<World> world_;
  uint64_t split_seq_ = 0;
};

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

std::unique_ptr<Communicator> in_process_single() {
  auto world = World::create({0}, std::make_shared<Abort>(1));
  return std::make_unique<InProcComm>(world, 0);
}

void run_in_process(int P, const std::function<void(Communicator&)>& fn) {
  if (P < 1 || P > 4096) bad_input("run_in_process: P = {} must be in [1, 4096]", P);
  auto abort = std::make_shared<Abort>(P);
  std::vector<int> ranks(P);
  for (int i = 0; i < P; ++i) ranks[i] = i;
  auto world = World::create(std::move(ranks), abort);
  auto body = [&](int r) {
    try {
      InProcComm comm(world, r);
      fn(comm);
      abort->finish(r);
    } catch (...) {
      auto e = std::current_exception();
      abort->raise(r, e, what_of(e));
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(P);
  for (int r = 1; r < P; ++r) threads.emplace_back(body, r);
  body(0);
  for (auto& t : threads) t.join();
  if (abort->first_error) std::rethrow_exception(abort->first_error);
}

}  // namespace tandem::comm
