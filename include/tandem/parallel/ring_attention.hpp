#pragma once
// Ring attention, pass-KV: every rank keeps its queries while the K/V blocks of all
// ranks travel around the ring (rank r sends to r+1, receives from r-1). The transfer
// of the next block overlaps attention on the block in hand (double buffering);
// partial results merge by log-sum-exp in fp32; blocks entirely in the causal future
// are skipped; with grouped KV heads only the G KV heads travel.
//
// RingAttention circulates every row of each rank's cache (the tokens cached before
// the step and the step's new ones, which each rank stores first), so it prefills onto
// empty caches (each rank's cache ends holding its own tokens' K/V) and onto caches
// that already hold a sharded sequence. Volume per layer and rank: it forwards the
// other ranks' blocks, sum over r' != r of c_r' * (2*G*d + 1) floats (c = cache rows).
//
// The pieces are reusable: RingCirculator moves blocks around any ring (pass-Q moves
// query blocks with it), PassKVRing runs pass-KV on any head subset (the hybrid runs
// it across its Ulysses groups on head-sharded blocks).
//
// Progress: MPI (Open MPI) moves a large (rendezvous) message only while its ranks call
// into MPI, so a transfer posted before one long attention call would mostly happen in
// the wait after it. Work on a block in hand therefore runs in query sub-blocks
// (attend_heads_progress) with RingCirculator::progress() - a test() of the transfers in
// flight - between them. Query rows are independent, so query sub-blocks (unlike key
// sub-blocks) need no extra log-sum-exp merge over all rows per sub-block, and give the
// same result as one call (sub-block edges fall on attention tile edges; with more
// threads than a sub-block has tiles the kernel may take its per-query path, equal within
// rounding). The MPI backend counts time inside test() as communication wait, so the
// hidden fraction a run reports does not credit a copy done inside a test.
// TANDEM_RING_SUBBLOCKS=0 turns the sub-blocking off (one call per block, for A/B
// measurements); TANDEM_RING_SUBBLOCKS=N caps the sub-blocks per block (default 16).
//
// Bounded transfer buffers: pass-KV moves each member's block as chunks of at most
// ring_chunk_rows() rows, each its own message (K, V, positions packed), and reads this
// rank's own rows chunk by chunk from the KV cache, so the K/V a rank holds beyond its
// cache is at most three chunks, not copies of a peer's whole shard. The chunks move on a
// conveyor: at every tick each member sends at most one message to the next and
// receives at most one from the previous (all posted before any wait, so no send waits
// on a receive that is posted later); a received chunk is forwarded at the next tick
// unless the next member owns it, and a member injects its next own chunk when it has
// nothing to forward. Every member computes the whole schedule from the block sizes, so
// it knows the size of every message it receives. With one chunk per block the order is
// that of whole blocks (own, rank-1, rank-2, ...). TANDEM_RING_CHUNK=R sets the rows per
// chunk (default 512; 0: whole blocks).
#include <memory>
#include <type_traits>
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/head_split.hpp"
#include "tandem/parallel/sequence_attention.hpp"

namespace tandem::parallel {

// Time split of a ring, accumulated over calls.
struct RingStats {
  double compute_seconds = 0;  // work on blocks in hand (attention, merges)
  double wait_seconds = 0;     // blocked on transfers (communication not hidden)
  double progress_seconds = 0; // inside progress() test calls (part of compute_seconds)
  uint64_t blocks_skipped = 0;
  uint64_t progress_calls = 0; // progress() calls that found a transfer in flight
  uint64_t head_pairs = 0;     // visible (query, key, head) triples computed
  uint64_t attention_calls = 0; // attention kernel calls on blocks in hand (one per sub-block)
};

// Circulates one block per member around the ring of `ring` (member r sends to r+1
// and receives from r-1), double buffered.
class RingCirculator {
 public:
  // Called with every member's block: its owner, rows of row_floats floats. A
  // non-owning reference to a callable (no allocation per call).
  class BlockFn {
   public:
    template <class F>
      requires(!std::is_same_v<std::remove_cv_t<F>, BlockFn>)
    BlockFn(F& f)  // NOLINT: implicit, like a function_ref
        : obj_(&f), call_([](void* o, int owner, const float* b, int64_t n) {
            (*static_cast<F*>(o))(owner, b, n);
          }) {}
    void operator()(int owner, const float* b, int64_t n) const { call_(obj_, owner, b, n); }

   private:
    void* obj_;
    void (*call_)(void*, int, const float*, int64_t);
  };

  // Writes `rows` rows of this member's block from row `first` to dst (a chunk).
  class FillFn {
   public:
    template <class F>
      requires(!std::is_same_v<std::remove_cv_t<F>, FillFn>)
    FillFn(F& f)  // NOLINT: implicit, like a function_ref
        : obj_(&f), call_([](void* o, int64_t first, int64_t rows, float* dst) {
            (*static_cast<F*>(o))(first, rows, dst);
          }) {}
    void operator()(int64_t first, int64_t rows, float* dst) const { call_(obj_, first, rows, dst); }

   private:
    void* obj_;
    void (*call_)(void*, int64_t, int64_t, float*);
  };

  RingCirculator(comm::Communicator& ring, int tag) : comm_(ring), tag_(tag) {}
  comm::Communicator& comm() const { return comm_; }
  // Collective: every member's block size in rows.
  void set_rows(int64_t rows);
  int64_t rows(int member) const { return rows_[size_t(member)]; }
  // This member's block, rows(rank) rows of row_floats floats, to fill before run().
  float* local_block(int64_t row_floats);
  // Calls fn for every member's block: this member's first, then those of rank-1,
  // rank-2, ...; the transfer of the next block overlaps fn. Collective.
  void run(BlockFn fn);
  // The same on the conveyor (see the top of this file), in chunks of at most chunk_rows
  // rows of row_floats floats: fn is called per chunk, with its owner and rows; this
  // member's chunks come from fill. Three chunk buffers at most. Collective.
  void run_chunked(int64_t chunk_rows, int64_t row_floats, FillFn fill, BlockFn fn);
  // Inside fn: whether a transfer is in flight, and a test() of it so MPI moves it.
  // Only the thread that called run() may call progress().
  bool in_flight() const { return send_ != nullptr || recv_ != nullptr; }
  void progress();
  // Cap on the query sub-blocks per block in hand (attend_heads_progress): ring_subblocks()
  // unless set here (n >= 0; 0 or 1: one call per block).
  void set_subblocks(int n) { subblocks_ = n; }
  int subblocks() const;
  RingStats& stats() { return stats_; }
  const RingStats& stats() const { return stats_; }
  size_t held_bytes() const;  // its block buffers

 private:
  comm::Communicator& comm_;
  int tag_;
  // One message: rows [first, first + n) of owner's block.
  struct Item {
    int owner = -1;
    int64_t first = 0, n = 0;
    explicit operator bool() const { return owner >= 0; }
  };
  void run_items(int64_t chunk_rows, const FillFn* fill, BlockFn fn);
  float* buffer(int i, size_t floats);

  std::vector<int64_t> rows_;
  int64_t max_rows_ = 0, row_floats_ = 0;
  std::vector<float> buf_[3];
  std::vector<int64_t> own_next_;  // run_items' schedule, reused between runs
  std::vector<Item> got_, sent_;
  std::unique_ptr<comm::Request> send_, recv_;  // the transfers of run() in flight
  int subblocks_ = -1;                          // -1: ring_subblocks()
  RingStats stats_;
};

// Query sub-blocks per block in hand while a transfer is in flight (see the top of
// this file): TANDEM_RING_SUBBLOCKS, default 16; 0 or 1 means one call per block.
int ring_subblocks();
// Rows per pass-KV chunk (see the top of this file) for a scheme chunk of sp_chunk tokens
// per rank per step: TANDEM_RING_CHUNK when set (0 means whole blocks, returned as
// kWholeBlocks, more rows than any block has), else sp_chunk, or 512 when that is 0
// (whole shards): a message is no larger than the rows a step computes.
constexpr int64_t kWholeBlocks = int64_t{1} << 60;
int64_t ring_chunk_rows(int64_t sp_chunk = 0);

// Query rows per sub-block when work on n_q queries against n_kv keys is split into at
// most max_parts sub-blocks of at least 128 queries, each a multiple of 64 (n_q: one call).
int64_t progress_subblock_rows(int max_parts, int64_t n_q, int64_t n_kv);

// attend_heads (head_split.hpp), split into query sub-blocks of at least 128 queries
// (at most circ.subblocks() of them) with circ.progress() between them while circ has a
// transfer in flight; one attend_heads call otherwise. Same arguments and result.
void attend_heads_progress(RingCirculator& circ, const HeadView& hv, const float* q,
                           const int32_t* q_pos, int64_t n_q, const KvRows& kv, float* out,
                           float* lse, kernels::ThreadPool& pool, AttnKernel kernel);

// Pass-KV on one head subset: queries stay, the K/V rows of every member visit every
// member, partials merge by log-sum-exp.
class PassKVRing {
 public:
  PassKVRing(comm::Communicator& ring, kernels::ThreadPool& pool, int tag = 11)
      : circ_(ring, tag), pool_(pool) {}
  // Collective, once per step: K/V rows this member contributes.
  void begin_step(int64_t n_kv) { circ_.set_rows(n_kv); }
  // n_q queries q (hv's layout) at q_pos attend to the K/V rows of all members; this
  // member's rows k, v [n_kv][hv.kv_heads*d] at kv_pos (n_kv as in begin_step).
  // out: hv's layout. Collective.
  void run(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
           const float* k, const float* v, const int32_t* kv_pos, float* out);
  // The same with this member's rows written chunk by chunk by fill(first, rows, dst):
  // K [rows][kvw], then V [rows][kvw], then rows int32 positions (kvw = hv.kv_heads*d).
  void run_filled(const HeadView& hv, const float* q, const int32_t* q_pos, int64_t n_q,
                  RingCirculator::FillFn fill, float* out);
  const RingStats& stats() const { return circ_.stats(); }
  // The log-sum-exp of the last run's queries over all keys, in hv's lse layout.
  const std::vector<float>& lse() const { return lse_; }
  void set_kernel(AttnKernel k) { kernel_ = k; }
  void set_subblocks(int n) { circ_.set_subblocks(n); }
  // Rows per conveyor chunk: ring_chunk_rows() unless set here (0 or kWholeBlocks: whole
  // blocks).
  void set_chunk_rows(int64_t rows) { chunk_rows_ = rows; }
  size_t held_bytes() const;  // its buffers and the circulator's
  RingCirculator& circulator() { return circ_; }

 private:
  RingCirculator circ_;
  int64_t chunk_rows_ = -1;  // -1: ring_chunk_rows()
  kernels::ThreadPool& pool_;
  AttnKernel kernel_ = AttnKernel::Flash;
  std::vector<float> part_out_, part_lse_, lse_;
  std::vector<int32_t> pos_;
};

class RingAttention : public SequenceAttention {
 public:
  RingAttention(AttnShape shape, kernels::ThreadPool& pool, comm::Communicator& comm);
  std::string_view name() const override { return "ring"; }
  bool lockstep() const override { return true; }
  int64_t begin_step(KVCache& cache, int64_t m, const int32_t* pos) override;
  void attend(KVCache& cache, int64_t slot, const AttnStep& s) override;
  void set_kernel(AttnKernel k) override {
    SequenceAttention::set_kernel(k);
    ring_.set_kernel(k);
  }
  void set_step_chunk(int64_t chunk) override { ring_.set_chunk_rows(ring_chunk_rows(chunk)); }
  uint64_t head_pairs() const override { return ring_.stats().head_pairs; }
  const RingStats& stats() const { return ring_.stats(); }

 private:
  PassKVRing ring_;
  HeadView view_;
};

}  // namespace tandem::parallel
