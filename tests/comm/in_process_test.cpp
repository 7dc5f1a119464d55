// In-process backend: the shared checks for P = 1..4, then timeouts, peer failures,
// argument errors and stats.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "comm/comm_checks.hpp"
#include "tandem/comm/in_process.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::comm {
namespace {

class InProcess : public ::testing::TestWithParam<int> {};

TEST_P(InProcess, Ring) { run_in_process(GetParam(), checks::ring); }
TEST_P(InProcess, TagsOutOfOrder) { run_in_process(GetParam(), checks::tags); }
TEST_P(InProcess, Sendrecv) { run_in_process(GetParam(), checks::sendrecv); }
TEST_P(InProcess, Alltoallv) { run_in_process(GetParam(), checks::alltoallv); }
TEST_P(InProcess, Allgatherv) { run_in_process(GetParam(), checks::allgatherv); }
TEST_P(InProcess, Allreduce) { run_in_process(GetParam(), checks::allreduce); }
TEST_P(InProcess, Broadcast) { run_in_process(GetParam(), checks::broadcast); }
TEST_P(InProcess, Barrier) { run_in_process(GetParam(), checks::barrier); }
TEST_P(InProcess, Split2DMesh) { run_in_process(GetParam(), checks::split); }
TEST_P(InProcess, Stats) { run_in_process(GetParam(), checks::stats); }
TEST_P(InProcess, TransferTime) { run_in_process(GetParam(), checks::transfer); }

TEST_P(InProcess, BarrierWaitsForEveryRank) {
  const int P = GetParam();
  std::atomic<int> arrived{0};
  run_in_process(P, [&](Communicator& c) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10 * c.rank()));
    arrived.fetch_add(1);
    c.barrier();
    EXPECT_EQ(arrived.load(), P);
    c.barrier();
  });
}

TEST_P(InProcess, BackendAndDefaults) {
  run_in_process(GetParam(), [&](Communicator& c) {
    EXPECT_EQ(c.backend(), "in-process");
    EXPECT_EQ(c.size(), GetParam());
    EXPECT_EQ(c.timeout(), Communicator::kDefaultTimeout);
    EXPECT_EQ(c.who(), fmt::format("rank {}", c.rank()));
  });
}

INSTANTIATE_TEST_SUITE_P(P, InProcess, ::testing::Range(1, 5));

// Runs fn on rank `rank` catching the Error it must throw; returns (message, seconds).
struct Caught {
  std::mutex m;
  std::string message;
  int exit_code = 0;
  double seconds = -1;
};
template <typename F>
void catch_on(Caught& out, F&& fn) {
  Stopwatch sw;
  try {
    fn();
  } catch (const Error& e) {
    std::lock_guard lock(out.m);
    out.message = e.what();
    out.exit_code = e.exit_code();
    out.seconds = sw.seconds();
    throw;
  }
}

// Ranks that must stay alive (a rank that returns ends its peers' waits at once) until the
// others are done: they wait for `count` arrivals instead of sleeping for a guessed time.
// The wait is bounded so that a wait that never ends makes the test fail (the waiters then
// see a returned peer: the wrong message) instead of hanging it.
class Arrivals {
 public:
  void arrive() {
    std::lock_guard lock(m_);
    ++n_;
    cv_.notify_all();
  }
  void wait_for(int count) {
    std::unique_lock lock(m_);
    cv_.wait_for(lock, std::chrono::seconds(120), [&] { return n_ >= count; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_ = 0;
};

// Runs fn, then counts an arrival whether it returned or threw.
template <typename F>
void then_arrive(Arrivals& a, F&& fn) {
  try {
    fn();
  } catch (...) {
    a.arrive();
    throw;
  }
  a.arrive();
}

// The wait-ends-at-once tests give their waits this timeout and check that they ended in
// under half of it: woken by the event, not by the deadline (which, with a failed or
// returned peer, ends in the same message). The timeout tests likewise check that a wait
// ended in under half the default timeout. No bound near the normal duration (which is
// milliseconds or the 0.2-0.3 s timeout), so a loaded machine cannot fail them.
constexpr double kLongTimeout = 120;

TEST(InProcessErrors, RecvWithNoSenderTimesOut) {
  Caught got;
  Arrivals done;
  EXPECT_THROW(run_in_process(2, [&](Communicator& c) {
                 if (c.rank() != 0) {  // alive but silent until rank 0 timed out
                   done.wait_for(1);
                   return;
                 }
                 c.set_timeout(0.2);
                 int x = 0;
                 then_arrive(done, [&] { catch_on(got, [&] { c.recv(&x, sizeof x, 1, 5); }); });
               }),
               Error);
  EXPECT_EQ(got.exit_code, 4);
  EXPECT_EQ(got.message, "rank 0: recv from rank 1 (tag 5) timed out after 0.2 s");
  EXPECT_GE(got.seconds, 0.19);  // not before its timeout (a lower bound: load only adds)
  // Ended by its own deadline, not the default one (the message names the timeout set,
  // whichever deadline the wait used): far above 0.2 s plus any scheduling delay.
  EXPECT_LT(got.seconds, Communicator::kDefaultTimeout / 2);
}

TEST(InProcessErrors, CollectiveTimeoutNamesTheOperation) {
  Caught got;
  Arrivals done;
  EXPECT_THROW(run_in_process(3, [&](Communicator& c) {
                 if (c.rank() == 2) {  // never joins the allreduce; returns once both failed
                   done.wait_for(2);
                   return;
                 }
                 c.set_timeout(0.3);
                 float v[4] = {};
                 then_arrive(done, [&] {
                   if (c.rank() == 0) catch_on(got, [&] { c.allreduce(v, 4, ReduceOp::Sum); });
                   else c.allreduce(v, 4, ReduceOp::Sum);
                 });
               }),
               Error);
  EXPECT_NE(got.message.find("rank 0: allreduce: "), std::string::npos) << got.message;
  // Its own timeout, or rank 1's quoted in "peer rank 1 failed: ...": 0.3 s, not the
  // default (which would also end in a timeout, 60 s later).
  EXPECT_NE(got.message.find("timed out after 0.3 s"), std::string::npos) << got.message;
  EXPECT_LT(got.seconds, Communicator::kDefaultTimeout / 2);  // as in the test above
}

TEST(InProcessErrors, PeerFailureEndsWaitsAtOnce) {
  Caught got0, got2;
  try {
    run_in_process(3, [&](Communicator& c) {
      c.set_timeout(kLongTimeout);
      int x = 0;
      if (c.rank() == 1) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // others usually waiting
        throw std::runtime_error("boom");
      }
      if (c.rank() == 0) catch_on(got0, [&] { c.recv(&x, sizeof x, 1, 0); });
      if (c.rank() == 2) catch_on(got2, [&] { c.barrier(); });
    });
    FAIL() << "run_in_process did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");  // the cause, not the errors it provoked
  }
  EXPECT_EQ(got0.message, "rank 0: recv from rank 1 (tag 0): peer rank 1 failed: boom");
  EXPECT_LT(got0.seconds, kLongTimeout / 2);
  EXPECT_NE(got2.message.find("rank 2: barrier: "), std::string::npos) << got2.message;
  EXPECT_NE(got2.message.find("peer rank 1 failed: boom"), std::string::npos) << got2.message;
  EXPECT_LT(got2.seconds, kLongTimeout / 2);
}

TEST(InProcessErrors, PeerFailureReachesSubCommunicators) {
  Caught got;
  EXPECT_THROW(run_in_process(4, [&](Communicator& c) {
                 c.set_timeout(kLongTimeout);  // inherited by the split
                 auto row = c.split(c.rank() / 2, c.rank());
                 if (c.rank() == 3) {
                   // Rank 3 may leave the split before rank 2 does: fail once rank 2 is
                   // usually waiting in the sub-communicator's barrier (if not, the barrier
                   // finds the failure on entry: the same message).
                   std::this_thread::sleep_for(std::chrono::milliseconds(100));
                   throw Error(ErrorKind::BadInput, "bad flag");
                 }
                 if (c.rank() == 2) catch_on(got, [&] { row->barrier(); });
               }),
               Error);
  EXPECT_NE(got.message.find("rank 0 (world rank 2): barrier: "), std::string::npos) << got.message;
  EXPECT_NE(got.message.find("peer rank 3 failed: bad flag"), std::string::npos) << got.message;
  EXPECT_LT(got.seconds, kLongTimeout / 2);
}

TEST(InProcessErrors, ReturnedPeerEndsWaitsAtOnce) {
  Caught got;
  EXPECT_THROW(run_in_process(2, [&](Communicator& c) {
                 c.set_timeout(kLongTimeout);
                 int x = 0;
                 if (c.rank() == 0) catch_on(got, [&] { c.recv(&x, sizeof x, 1, 9); });
                 // Rank 1 returns once rank 0 is usually waiting, so that its return must
                 // wake the wait (if not, the wait finds it returned on entry: the same
                 // message).
                 if (c.rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(50));
               }),
               Error);
  EXPECT_EQ(got.message,
            "rank 0: recv from rank 1 (tag 9): peer rank 1 returned without sending this message");
  EXPECT_LT(got.seconds, kLongTimeout / 2);
}

TEST(InProcessErrors, SizeMismatchIsAnError) {
  Caught got;
  EXPECT_THROW(run_in_process(2, [&](Communicator& c) {
                 int64_t big = 1;
                 int32_t small = 0;
                 if (c.rank() == 0) c.send(&big, sizeof big, 1, 1);
                 else catch_on(got, [&] { c.recv(&small, sizeof small, 0, 1); });
               }),
               Error);
  EXPECT_EQ(got.message,
            "rank 1: recv from rank 0 (tag 1): message of 8 bytes, receive expects 4 bytes");
}

TEST(InProcessErrors, BadArgumentsAreRejected) {
  run_in_process(2, [&](Communicator& c) {
    int x = 0;
    EXPECT_THROW(c.isend(&x, 4, 2, 0), Error);
    EXPECT_THROW(c.irecv(&x, 4, -1, 0), Error);
    EXPECT_THROW(c.isend(&x, 4, 0, -1), Error);
    EXPECT_THROW(c.isend(&x, 4, 0, Communicator::kMaxTag + 1), Error);
    EXPECT_THROW(c.broadcast(&x, 4, 5), Error);
    EXPECT_THROW(c.set_timeout(0), Error);
    std::vector<size_t> one(1);
    EXPECT_THROW(c.alltoallv(&x, one, one, &x, one, one), Error);
  });
  EXPECT_THROW(run_in_process(0, [](Communicator&) {}), Error);
}

TEST(InProcessErrors, TimeoutFromEnvironment) {
  ::setenv("TANDEM_COMM_TIMEOUT", "1.5", 1);
  run_in_process(2, [](Communicator& c) {
    EXPECT_EQ(c.timeout(), 1.5);
    auto sub = c.split(0, 0);
    EXPECT_EQ(sub->timeout(), 1.5);
  });
  ::setenv("TANDEM_COMM_TIMEOUT", "soon", 1);
  try {
    run_in_process(2, [](Communicator&) {});
    ADD_FAILURE() << "bad TANDEM_COMM_TIMEOUT accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("TANDEM_COMM_TIMEOUT"), std::string::npos);
  }
  ::unsetenv("TANDEM_COMM_TIMEOUT");
}

// Rank 1 sends 200 ms after rank 0 is about to wait (not after a sleep from the start: a
// late rank 0 would then wait less); rank 0's wait time counts those 200 ms, and no more
// than the call took. The transfer is exposed: its time in flight is the time blocked,
// so hidden ~ 0.
TEST(InProcessStats, WaitTimeIsCountedAndAnExposedTransferIsAllWait) {
  Arrivals waiting;
  run_in_process(2, [&](Communicator& c) {
    int x = 42;
    if (c.rank() == 1) {
      waiting.wait_for(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      c.send(&x, sizeof x, 0, 0);
    } else {
      x = 0;
      c.reset_stats();
      waiting.arrive();
      const Stopwatch sw;
      c.recv(&x, sizeof x, 1, 0);
      const double call = sw.seconds();
      const CommStats s = c.stats();
      EXPECT_EQ(x, 42);
      EXPECT_GE(s.wait_seconds, 0.1);
      EXPECT_LE(s.wait_seconds, call);
      EXPECT_EQ(s.bytes_received, sizeof x);
      EXPECT_GE(s.transfer_seconds, s.wait_seconds);
      EXPECT_LE(s.transfer_seconds - s.wait_seconds, 0.02);
      EXPECT_LE(1 - s.wait_seconds / s.transfer_seconds, 0.1);
    }
  });
}

// A hidden transfer: the message is there before the receive is posted; 50 ms of work
// between post and wait. In flight >= the work, blocked ~ 0: hidden ~ 1. Two operations
// in flight at once (the receive and a send) count once.
TEST(InProcessStats, HiddenTransferCountsTheWorkNotTheWait) {
  run_in_process(2, [&](Communicator& c) {
    const int peer = 1 - c.rank();
    int early = 10 + c.rank(), got = 0, late = 20 + c.rank(), got_late = 0;
    c.send(&early, sizeof early, peer, 1);
    c.barrier();
    c.reset_stats();
    const Stopwatch sw;
    auto rq = c.irecv(&got, sizeof got, peer, 1);
    auto sq = c.isend(&late, sizeof late, peer, 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    c.wait(*rq);
    c.wait(*sq);
    const double elapsed = sw.seconds();
    const CommStats s = c.stats();
    c.recv(&got_late, sizeof got_late, peer, 2);
    EXPECT_EQ(got, 10 + peer);
    EXPECT_EQ(got_late, 20 + peer);
    EXPECT_GE(s.transfer_seconds, 0.049);
    EXPECT_LE(s.transfer_seconds, elapsed);  // once, not once per operation
    EXPECT_LE(s.wait_seconds, 0.005);
    EXPECT_GE(1 - s.wait_seconds / s.transfer_seconds, 0.9);
  });
}

// A request destroyed before completion (cancelled) leaves flight then; a pending one
// counts up to the moment stats() is read.
TEST(InProcessStats, CancelledRequestStopsCounting) {
  run_in_process(2, [&](Communicator& c) {
    if (c.rank() == 1) return;
    int x = 0;
    c.reset_stats();
    auto rq = c.irecv(&x, sizeof x, 1, 9);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_GE(c.stats().transfer_seconds, 0.019);  // still in flight
    rq.reset();
    const double t = c.stats().transfer_seconds;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(c.stats().transfer_seconds, t);
  });
}

// A backend without split: the base class must refuse loudly.
class NoSplitComm final : public Communicator {
 public:
  NoSplitComm() : Communicator(0, 1, 0) {}
  std::string_view backend() const override { return "test"; }

 protected:
  std::unique_ptr<Request> do_isend(const void*, size_t, int, int) override { unsupported("isend"); }
  std::unique_ptr<Request> do_irecv(void*, size_t, int, int) override { unsupported("irecv"); }
};

TEST(CommunicatorBase, UnsupportedOperationsThrow) {
  NoSplitComm c;
  try {
    c.split(0, 0);
    FAIL() << "split did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Comm);
    EXPECT_STREQ(e.what(), "rank 0: split is not supported by the test backend");
  }
  int x = 0;
  EXPECT_THROW(c.send(&x, 4, 0, 0), Error);
  c.barrier();  // P = 1: the generic collectives need no messages
}

}  // namespace
}  // namespace tandem::comm
