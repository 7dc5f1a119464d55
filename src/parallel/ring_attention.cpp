#include "tandem/parallel/ring_attention.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "tandem/core/error.hpp"
#include "tandem/core/held_bytes.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/kernels/attention_merge.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/parallel/scheme.hpp"

namespace tandem::parallel {

// ---- RingCirculator ----

size_t RingCirculator::held_bytes() const { return held_bytes_of(buf_[0], buf_[1], buf_[2]); }

size_t PassKVRing::held_bytes() const {
  return circ_.held_bytes() + held_bytes_of(part_out_, part_lse_, lse_, pos_);
}

void RingCirculator::set_rows(int64_t rows) {
  rows_.assign(size_t(comm_.size()), 0);
  rows_[size_t(comm_.rank())] = rows;
  comm_.allreduce(rows_.data(), rows_.size(), comm::ReduceOp::Sum);
  max_rows_ = *std::max_element(rows_.begin(), rows_.end());
}

float* RingCirculator::local_block(int64_t row_floats) {
  row_floats_ = row_floats;
  return buffer(0, size_t(max_rows_ * row_floats));
}

float* RingCirculator::buffer(int i, size_t floats) {
  if (buf_[i].size() < floats) {
    buf_[i] = {};  // free first: never the old and the new buffer at once
    buf_[i].resize(floats);
  }
  return buf_[i].data();
}

void RingCirculator::run(BlockFn fn) { run_items(std::max<int64_t>(max_rows_, 1), nullptr, fn); }

void RingCirculator::run_chunked(int64_t chunk_rows, int64_t row_floats, FillFn fill, BlockFn fn) {
  TD_CHECK(chunk_rows >= 1 && row_floats >= 1);
  row_floats_ = row_floats;
  run_items(std::min(chunk_rows, std::max<int64_t>(max_rows_, 1)), &fill, fn);
}

// The conveyor (see the header). Without fill, this member's one chunk is the block the
// caller wrote into buffer 0 (local_block) and is injected at tick 0.
void RingCirculator::run_items(int64_t chunk_rows, const FillFn* fill, BlockFn fn) {
  const int P = comm_.size(), r = comm_.rank();
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  const size_t chunk_floats = size_t(chunk_rows * row_floats_);
  // The schedule of every member: the next own row to inject, and what it received at
  // the last tick (sent[j] at this tick is received by j+1 at the next). Kept in members:
  // no allocation per run once sized.
  std::vector<int64_t>& own_next = own_next_;
  std::vector<Item>& got = got_;
  std::vector<Item>& sent = sent_;
  own_next.assign(size_t(P), 0);
  got.assign(size_t(P), Item{});
  sent.assign(size_t(P), Item{});
  auto plan_tick = [&] {
    bool any = false;
    for (int j = 0; j < P; ++j) {
      const Item& in = got[size_t(j)];
      Item& out = sent[size_t(j)];
      out = Item{};
      if (in && in.owner != (j + 1) % P) {
        out = in;  // forward what arrived
      } else if (own_next[size_t(j)] < rows_[size_t(j)]) {
        const int64_t f = own_next[size_t(j)];
        out = Item{j, f, std::min(chunk_rows, rows_[size_t(j)] - f)};
        own_next[size_t(j)] += out.n;
      }
      any |= bool(out);
    }
    return any;
  };
  send_.reset();
  recv_.reset();
  Item held;           // received at the last tick, in buffer held_buf
  int held_buf = -1;
  auto free_buffer = [&](int a, int b) {
    for (int i = 0; i < 3; ++i)
      if (i != a && i != b) return i;
    return -1;
  };
  if (P == 1) {  // no ring: this member's block, chunk by chunk
    for (int64_t f = 0; f < rows_[0]; f += chunk_rows) {
      const int64_t n = std::min(chunk_rows, rows_[0] - f);
      float* b = fill ? buffer(0, chunk_floats) : buf_[0].data();
      if (fill) (*fill)(f, n, b);
      const Stopwatch c;
      fn(0, b, n);
      stats_.compute_seconds += c.seconds();
    }
    return;
  }
  for (;;) {
    const bool sending = plan_tick();
    const Item out = sent[size_t(r)], in = sent[size_t(prev)];
    if (!sending && !held) break;
    // This tick: send `out` (forwarded from held, or a fresh own chunk), receive `in`.
    const bool own = out && out.owner == r;
    int out_buf = own ? free_buffer(held_buf, -1) : held_buf;
    if (own) {
      if (fill) {
        (*fill)(out.first, out.n, buffer(out_buf, chunk_floats));
      } else {
        TD_CHECK(out.first == 0 && out_buf == 0);  // the caller's block, in buffer 0
      }
    }
    const size_t msg_floats = size_t(out.n * row_floats_);
    if (out) send_ = comm_.isend(buf_[out_buf].data(), msg_floats * sizeof(float), next, tag_);
    int in_buf = -1;
    if (in) {
      in_buf = free_buffer(held_buf, own ? out_buf : -1);
      recv_ = comm_.irecv(buffer(in_buf, std::max(chunk_floats, size_t(in.n * row_floats_))),
                          size_t(in.n * row_floats_) * sizeof(float), prev, tag_);
    }
    const Stopwatch c;
    if (held) fn(held.owner, buf_[held_buf].data(), held.n);
    if (own) fn(r, buf_[out_buf].data(), out.n);
    stats_.compute_seconds += c.seconds();
    const Stopwatch w;
    if (recv_) comm_.wait(*recv_);
    if (send_) comm_.wait(*send_);
    recv_.reset();
    send_.reset();
    stats_.wait_seconds += w.seconds();
    // Advance every member's schedule.
    for (int j = 0; j < P; ++j) got[size_t(j)] = sent[size_t((j + P - 1) % P)];
    held = in;
    held_buf = in_buf;
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

int64_t ring_chunk_rows(int64_t sp_chunk) {
  static const int64_t env = [] {
    const char* e = std::getenv("TANDEM_RING_CHUNK");
    if (!e || !*e) return int64_t{-1};
    char* end = nullptr;
    const long long v = std::strtoll(e, &end, 10);
    if (end == e || *end != '\0' || v < 0 || v > (int64_t{1} << 30))
      fail(ErrorKind::BadInput,
           "TANDEM_RING_CHUNK={}: expected a whole number of rows in [0, 2^30] (0: whole blocks)", e);
    return v == 0 ? kWholeBlocks : int64_t(v);
  }();
  if (env > 0) return env;
  return sp_chunk > 0 ? sp_chunk : int64_t{512};
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

int64_t progress_subblock_rows(int max_parts, int64_t n_q, int64_t n_kv) {
  // Sub-blocks of whole multiples of 64 queries (a multiple of every attention tile
  // width), at least 128 queries each.
  constexpr int64_t kAlign = 64, kMinRows = 128;
  if (max_parts <= 1 || n_kv == 0) return n_q;
  const int64_t rows = std::max<int64_t>(kMinRows, (n_q + max_parts - 1) / max_parts);
  return (rows + kAlign - 1) / kAlign * kAlign;
}

void attend_heads_progress(RingCirculator& circ, const HeadView& hv, const float* q,
                           const int32_t* q_pos, int64_t n_q, const KvRows& kv, float* out,
                           float* lse, kernels::ThreadPool& pool, AttnKernel kernel) {
  const int64_t rows = progress_subblock_rows(circ.subblocks(), n_q, kv.n);
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

// Packed chunk layout in floats: K [n][kvw], V [n][kvw], then n int32 positions.
void PassKVRing::run(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                     const float* k, const float* v, const int32_t* kv_pos, float* out) {
  const int64_t kvw = int64_t(hv.kv_heads) * hv.d;
  auto fill = [&](int64_t first, int64_t n, float* dst) {
    std::memcpy(dst, k + first * kvw, size_t(n * kvw) * sizeof(float));
    std::memcpy(dst + n * kvw, v + first * kvw, size_t(n * kvw) * sizeof(float));
    std::memcpy(dst + 2 * n * kvw, kv_pos + first, size_t(n) * sizeof(int32_t));
  };
  run_filled(hv, q, q_pos, n_q, fill, out);
}

void PassKVRing::run_filled(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                            RingCirculator::FillFn fill, float* out) {
  const int64_t kvw = int64_t(hv.kv_heads) * hv.d;
  const int64_t rows_q = n_q * hv.q_heads;  // (query, head) rows of out and lse
  part_out_.resize(size_t(rows_q * hv.d));
  part_lse_.resize(size_t(rows_q));
  lse_.assign(size_t(rows_q), -std::numeric_limits<float>::infinity());
  std::fill(out, out + rows_q * hv.d, 0.0f);
  const int32_t q_max = n_q > 0 ? *std::max_element(q_pos, q_pos + n_q) : 0;
  const int32_t q_min = n_q > 0 ? *std::min_element(q_pos, q_pos + n_q) : 0;
  bool first = true;  // nothing merged yet: the first partial goes straight to out
  auto on_block = [&](int, const float* blk, int64_t n) {
    if (rows_q == 0 || n == 0) return;
    pos_.resize(size_t(n));
    std::memcpy(pos_.data(), blk + 2 * n * kvw, size_t(n) * sizeof(int32_t));
    // Causal skip: a block whose first key lies after every query contributes nothing;
    // nor does one whose last key has left every query's window.
    const auto [k_min, k_max] = std::minmax_element(pos_.begin(), pos_.end());
    if (*k_min > q_max || (hv.window > 0 && int64_t(q_min) - *k_max >= hv.window)) {
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
  const int64_t rows = chunk_rows_ < 0 ? ring_chunk_rows() : chunk_rows_ == 0 ? kWholeBlocks : chunk_rows_;
  circ_.run_chunked(rows, 2 * kvw + 1, fill, on_block);
}

// ---- RingAttention ----

RingAttention::RingAttention(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm)
    : SequenceAttention(shape, pool),
      ring_(comm, pool),
      view_(full_head_view(shape.H, shape.G, shape.d, shape.scale, shape.softcap)) {}

int64_t RingAttention::begin_step(KVCache& cache, int64_t m, const int32_t* pos) {
  // Every rank learns every block size (collective, once per step).
  ring_.begin_step(cache.size() + m);
  return SequenceAttention::begin_step(cache, m, pos);
}

void RingAttention::attend(KVCache& cache, int64_t slot, const AttnStep& s) {
  store_kv(cache, slot, s);
  // This rank's rows: every row of its cache as stored (through the page table), read
  // chunk by chunk as the conveyor sends them.
  const int64_t kvw = shape_.kv_dim();
  auto fill = [&](int64_t first, int64_t n, float* dst) {
    cache.read(s.layer, first, n, dst, dst + n * kvw);
    cache.read_positions(first, n, reinterpret_cast<int32_t*>(dst + 2 * n * kvw));
  };
  ring_.run_filled(with_window(view_, s.window), s.q, s.pos, s.m, fill, s.out);
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
  x.workspace_bytes = [](const Scheme& s, AttnShape shape, int64_t m_local, int64_t n_total,
                         int ranks) {
    return scheme_parts::bytes_of(scheme_parts::ring_block_floats(s, shape, n_total, ranks) +
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
