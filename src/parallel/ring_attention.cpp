#include "tandem/parallel/ring_attention.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/kernels/attention_merge.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/parallel/scheme.hpp"

namespace tandem::parallel {

// ---- RingCirculator ----

void RingCirculator::set_rows(int64_t rows) {
  rows_.assign(size_t(comm_.size()), 0);
  rows_[size_t(comm_.rank())] = rows;
  comm_.allreduce(rows_.data(), rows_.size(), comm::ReduceOp::Sum);
  max_rows_ = *std::max_element(rows_.begin(), rows_.end());
}

float* RingCirculator::local_block(int64_t row_floats) {
  row_floats_ = row_floats;
  for (auto& b : buf_)
    if (b.size() < size_t(max_rows_ * row_floats)) b.resize(size_t(max_rows_ * row_floats));
  return buf_[0].data();
}

void RingCirculator::run(BlockFn fn) {
  const int P = comm_.size(), r = comm_.rank();
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  const auto bytes = [&](int owner) {
    return size_t(rows_[size_t(owner)] * row_floats_) * sizeof(float);
  };
  send_.reset();
  recv_.reset();
  for (int step = 0; step < P; ++step) {
    const int owner = (r - step + P) % P;  // whose block is in hand
    float* cur = buf_[step % 2].data();
    // Forward the block in hand and receive the next one while working on it.
    if (step + 1 < P) {
      if (send_) {  // the other buffer is still being sent from the previous step
        const Stopwatch w;
        comm_.wait(*send_);
        stats_.wait_seconds += w.seconds();
      }
      send_ = comm_.isend(cur, bytes(owner), next, tag_);
      recv_ = comm_.irecv(buf_[(step + 1) % 2].data(), bytes((owner - 1 + P) % P), prev, tag_);
    }
    const Stopwatch c;
    fn(owner, cur, rows_[size_t(owner)]);
    stats_.compute_seconds += c.seconds();
    if (recv_) {
      const Stopwatch w;
      comm_.wait(*recv_);
      recv_.reset();
      stats_.wait_seconds += w.seconds();
    }
  }
  if (send_) {
    const Stopwatch w;
    comm_.wait(*send_);
    send_.reset();
    stats_.wait_seconds += w.seconds();
  }
}

void RingCirculator::progress() {
  if (!in_flight()) return;
  const Stopwatch t;
  // A completed request is dropped so later calls cost nothing; the waits in run()
  // then find it gone. test() throws Error(Comm) on a failed transfer.
  if (recv_ && recv_->test()) recv_.reset();
  if (send_ && send_->test()) send_.reset();
  stats_.progress_seconds += t.seconds();
  ++stats_.progress_calls;
}

int RingCirculator::subblocks() const { return subblocks_ >= 0 ? subblocks_ : ring_subblocks(); }

int ring_subblocks() {
  static const int n = [] {
    const char* e = std::getenv("TANDEM_RING_SUBBLOCKS");
    if (!e || !*e) return 16;
    char* end = nullptr;
    const long v = std::strtol(e, &end, 10);
    if (end == e || *end != '\0' || v < 0 || v > 4096)
      fail(ErrorKind::BadInput,
           "TANDEM_RING_SUBBLOCKS={}: expected a whole number of sub-blocks in [0, 4096]", e);
    return int(v);
  }();
  return n;
}

void attend_heads_progress(RingCirculator& circ, const HeadView& hv, const float* q,
                           const int32_t* q_pos, int64_t n_q, const KvRows& kv, float* out,
                           float* lse, kernels::ThreadPool& pool, AttnKernel kernel) {
  const int64_t n_kv = kv.n;
  // Sub-blocks of whole multiples of 64 queries (a multiple of every attention tile
  // width), at least 128 queries each.
  constexpr int64_t kAlign = 64, kMinRows = 128;
  const int64_t max_parts = circ.subblocks();
  int64_t rows = n_q;
  if (max_parts > 1 && n_kv > 0) {
    rows = std::max<int64_t>(kMinRows, (n_q + max_parts - 1) / max_parts);
    rows = (rows + kAlign - 1) / kAlign * kAlign;
  }
  if (rows >= n_q || !circ.in_flight()) {
    ++circ.stats().attention_calls;
    attend_heads(hv, q, q_pos, n_q, kv, out, lse, pool, kernel);
    return;
  }
  for (int64_t i0 = 0; i0 < n_q; i0 += rows) {
    ++circ.stats().attention_calls;
    attend_head_rows(hv, q, q_pos, n_q, i0, std::min(rows, n_q - i0), kv, out, lse, pool,
                     kernel);
    circ.progress();  // on this thread, between kernel calls: MPI is never concurrent
  }
}

// ---- PassKVRing ----

// Packed block layout in floats: K [n][kvw], V [n][kvw], then n int32 positions.
void PassKVRing::run(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                     const float* k, const float* v, const int32_t* kv_pos, float* out) {
  const int64_t kvw = int64_t(hv.kv_heads) * hv.d;
  const int64_t n_kv = circ_.rows(circ_.comm().rank());
  float* b = local_block(hv);
  if (n_kv > 0) {
    std::memcpy(b, k, size_t(n_kv * kvw) * sizeof(float));
    std::memcpy(b + n_kv * kvw, v, size_t(n_kv * kvw) * sizeof(float));
    std::memcpy(b + 2 * n_kv * kvw, kv_pos, size_t(n_kv) * sizeof(int32_t));
  }
  run_local(hv, q, q_pos, n_q, out);
}

void PassKVRing::run_local(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                           float* out) {
  const int64_t kvw = int64_t(hv.kv_heads) * hv.d;
  const int64_t rows_q = n_q * hv.q_heads;  // (query, head) rows of out and lse
  part_out_.resize(size_t(rows_q * hv.d));
  part_lse_.resize(size_t(rows_q));
  lse_.assign(size_t(rows_q), -std::numeric_limits<float>::infinity());
  std::fill(out, out + rows_q * hv.d, 0.0f);
  const int32_t q_max = n_q > 0 ? *std::max_element(q_pos, q_pos + n_q) : 0;
  bool first = true;  // nothing merged yet: the first partial goes straight to out
  auto on_block = [&](int, const float* blk, int64_t n) {
    if (rows_q == 0 || n == 0) return;
    pos_.resize(size_t(n));
    std::memcpy(pos_.data(), blk + 2 * n * kvw, size_t(n) * sizeof(int32_t));
    // Causal skip: a block whose first key lies after every query contributes nothing.
    if (*std::min_element(pos_.begin(), pos_.end()) > q_max) {
      ++circ_.stats().blocks_skipped;
      return;
    }
    float* o = first ? out : part_out_.data();
    float* l = first ? lse_.data() : part_lse_.data();
    circ_.stats().head_pairs += visible_pairs(q_pos, n_q, pos_.data(), n) * uint64_t(hv.q_heads);
    attend_heads_progress(circ_, hv, q, q_pos, n_q, KvRows{blk, blk + n * kvw, pos_.data(), n, {}},
                          o, l, pool_, kernel_);
    if (!first) kernels::attention_merge(out, lse_.data(), o, l, rows_q, 1, hv.d);
    first = false;
  };
  circ_.run(on_block);
}

// ---- RingAttention ----

RingAttention::RingAttention(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm)
    : SequenceAttention(shape, pool),
      ring_(comm, pool),
      view_(full_head_view(shape.H, shape.G, shape.d, shape.scale)) {}

int64_t RingAttention::begin_step(KVCache& cache, int64_t m, const int32_t* pos) {
  // Every rank learns every block size (collective, once per step).
  ring_.begin_step(cache.size() + m);
  return SequenceAttention::begin_step(cache, m, pos);
}

void RingAttention::attend(KVCache& cache, int64_t slot, const AttnStep& s) {
  store_kv(cache, slot, s);
  // This rank's block: every row of its cache as stored (through the page table).
  const int64_t n = cache.size(), kvw = shape_.kv_dim();
  float* b = ring_.local_block(view_);
  cache.read(s.layer, 0, n, b, b + n * kvw);
  cache.read_positions(0, n, reinterpret_cast<int32_t*>(b + 2 * n * kvw));
  ring_.run_local(view_, s.q, s.pos, s.m, s.out);
}

}  // namespace tandem::parallel

// ---- Descriptors: ring (contiguous shards) and zigzag ----

namespace tandem::parallel {
namespace {
SchemeDesc pass_kv_desc(std::string_view name, Placement placement, std::string_view help) {
  SchemeDesc x;
  x.name = x.syntax = name;
  x.help = help;
  x.placement = placement;
  x.onto_cache = true;
  x.make = scheme_parts::make_strategy<RingAttention>;
  x.workspace_bytes = [](const Scheme&, AttnShape shape, int64_t m_local, int64_t n_total,
                         int ranks) {
    return scheme_parts::bytes_of(scheme_parts::ring_block_floats(shape, n_total, ranks) +
                                  scheme_parts::partial_floats(shape, m_local));
  };
  x.cost = scheme_parts::pass_kv_cost;
  return x;
}
}  // namespace

const SchemeDesc& ring_scheme() {
  static const SchemeDesc d =
      pass_kv_desc("ring", Placement::Contiguous, "pass-KV ring attention, contiguous shards");
  return d;
}

const SchemeDesc& zigzag_scheme() {
  static const SchemeDesc d = pass_kv_desc(
      "zigzag", Placement::Zigzag,
      "pass-KV ring attention, zigzag shards (chunks r and 2P-1-r: balanced causal work)");
  return d;
}

}  // namespace tandem::parallel
