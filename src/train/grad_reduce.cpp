#include "tandem/train/grad_reduce.hpp"

#include <algorithm>

#include "tandem/core/error.hpp"

namespace tandem::train {

size_t GradReducer::inflight_bytes(int64_t floats, bool overlap) {
  return size_t(std::min<int64_t>(floats, kPieceFloats * (overlap ? kMaxInFlight : 1))) * sizeof(float);
}

GradReducer::GradReducer(comm::Communicator& comm, ParamSet& grads, bool overlap,
                         int64_t piece_floats)
    : comm_(comm), grads_(grads), overlap_(overlap && comm.size() > 1), piece_(piece_floats),
      pieces_((grads.size() + piece_floats - 1) / piece_floats) {
  TD_CHECK(piece_floats > 0);
  begin();
}

GradReducer::~GradReducer() = default;

void GradReducer::begin() {
  TD_CHECK(flight_.empty() && queue_.empty());
  final_.assign(size_t(pieces_), 0);
  posted_.assign(size_t(pieces_), false);
}

void GradReducer::ready(ParamSet::Span s) {
  if (!overlap_) return;
  TD_CHECK(s.first >= 0 && s.n >= 0 && s.first + s.n <= grads_.size());
  for (int64_t p = s.first / piece_; p * piece_ < s.first + s.n; ++p) {
    const int64_t lo = std::max(s.first, p * piece_);
    const int64_t hi = std::min({s.first + s.n, (p + 1) * piece_, grads_.size()});
    int64_t& f = final_[size_t(p)];
    f += hi - lo;
    const int64_t size = std::min(piece_, grads_.size() - p * piece_);
    TD_CHECK(f <= size);  // spans reported once each
    if (f == size) queue_.push_back(p);
  }
  post_queued();
}

void GradReducer::post_queued() {
  while (!queue_.empty() && int(flight_.size()) < kMaxInFlight) {
    const int64_t p = queue_.front();
    queue_.pop_front();
    posted_[size_t(p)] = true;
    const int64_t first = p * piece_;
    flight_.push_back(comm_.iallreduce(grads_.data() + first,
                                       size_t(std::min(piece_, grads_.size() - first)),
                                       comm::ReduceOp::Sum));
  }
}

void GradReducer::progress() {
  if (!overlap_) return;
  // Oldest first: a backend without native non-blocking collectives completes them only
  // in a wait, in order (communicator.hpp), so its requests stay until finish().
  while (!flight_.empty() && flight_.front()->test()) flight_.pop_front();
  post_queued();
}

void GradReducer::finish() {
  if (!overlap_) {
    for (int64_t i = 0; i < grads_.size(); i += piece_)
      comm_.allreduce(grads_.data() + i, size_t(std::min(piece_, grads_.size() - i)),
                      comm::ReduceOp::Sum);
    return;
  }
  posted_early_ = std::count(posted_.begin(), posted_.end(), true);
  for (int64_t p = 0; p < pieces_; ++p)
    if (!posted_[size_t(p)] && std::find(queue_.begin(), queue_.end(), p) == queue_.end())
      queue_.push_back(p);
  while (!flight_.empty() || !queue_.empty()) {
    post_queued();
    comm_.wait(*flight_.front());
    flight_.pop_front();
  }
  begin();
}

}  // namespace tandem::train
