#pragma once
// The gradient all-reduce of a training step, in pieces of the gradient buffer, either
// after the backward (blocking, piece after piece) or overlapped with it: the backward
// reports each tensor's gradient as final (GradSink::ready, last layer first), a piece
// whose floats are all final is posted as a non-blocking all-reduce, and the backward
// lets the transfers move between its ops (GradSink::progress; MPI moves a message only
// inside MPI calls). A few pieces are in flight at once, so the copies MPI makes stay
// bounded (inflight_bytes()). Pieces are posted, and completed, in the same order on
// every rank, since every rank reports the same tensors in the same order.
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/train/params.hpp"

namespace tandem::train {

// What ModelGrad::step tells as it finishes gradients (see model_grad.hpp).
class GradSink {
 public:
  virtual ~GradSink() = default;
  // The span's gradient is final for this step.
  virtual void ready(ParamSet::Span s) = 0;
  // Called between ops of the backward.
  virtual void progress() = 0;
};

class GradReducer final : public GradSink {
 public:
  static constexpr int64_t kPieceFloats = int64_t(1) << 19;
  static constexpr int kMaxInFlight = 4;
  // Bytes of the pieces in flight at once (MPI may copy each) for a buffer of `floats`.
  static size_t inflight_bytes(int64_t floats, bool overlap);

  // Sums grads over comm (in place); overlap false: everything in finish().
  // piece_floats: the pieces' size (tests use small ones).
  GradReducer(comm::Communicator& comm, ParamSet& grads, bool overlap,
              int64_t piece_floats = kPieceFloats);
  ~GradReducer() override;
  // Starts a step: no span final yet.
  void begin();
  void ready(ParamSet::Span s) override;
  void progress() override;
  // Posts what is left (pieces never made final whole, in order) and waits for all.
  void finish();
  // Pieces of the last finished step posted before its finish() (overlapped with the
  // backward), and all its pieces.
  int64_t posted_early() const { return posted_early_; }
  int64_t pieces() const { return pieces_; }

 private:
  void post_queued();

  comm::Communicator& comm_;
  ParamSet& grads_;
  bool overlap_;
  int64_t piece_ = 0, pieces_ = 0, posted_early_ = 0;
  std::vector<int64_t> final_;  // floats of each piece reported final
  std::vector<bool> posted_;
  std::deque<int64_t> queue_;   // final pieces not yet posted, in order
  std::deque<std::unique_ptr<comm::Request>> flight_;  // posted, oldest first
};

}  // namespace tandem::train
