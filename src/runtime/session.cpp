#include "tandem/runtime/session.hpp"

#include <algorithm>

#include "tandem/comm/in_process.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/process_memory.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/parallel/sharded_decode.hpp"

namespace tandem {

parallel::Scheme resolve_scheme(const std::string& name, int ranks, std::string_view flag) {
  if (name.empty()) return parallel::parse_scheme(ranks == 1 ? "local" : "ring", ranks, flag);
  return parallel::parse_scheme(name, ranks, flag);
}

// ---- Memory ----

MemoryEstimate estimate_rank_memory(const ModelInfo& info, const parallel::Scheme& scheme,
                                    const EngineOptions& opt, int ranks, int rank, Workload w) {
  const std::vector<parallel::TokenRange> ranges =
      parallel::scheme_shard(scheme, w.prompt, ranks, rank);
  const int64_t shard = parallel::range_tokens(ranges);
  const int64_t cache = parallel::scheme_cache_capacity(scheme, w.prompt, w.decode, ranks, rank);
  // One forward step: a band's share under a lockstep strategy (the whole shard when it
  // does not chunk), else a chunk; without the KV cache the whole sequence so far.
  const int64_t step = w.recompute ? w.prompt + w.decode
                       : scheme.desc->lockstep
                           ? parallel::scheme_step_tokens(scheme, w.prompt, ranks, rank)
                           : std::min(shard, Engine::kDefaultChunk);
  const uint64_t workspace = parallel::scheme_workspace_bytes(scheme, shape_of(info.hparams), step,
                                                              w.prompt, ranks);
  MemoryEstimate e = estimate_memory(info, step, cache, workspace, opt.kv.type, opt.kv.page_tokens);
  // The prompt's ids on every rank, plus this rank's ids and positions.
  e.tokens = uint64_t(w.prompt + 2 * shard) * sizeof(int32_t);
  // Its rows among the last logit_rows positions; rank 0 of several also gathers them all.
  const int64_t kept = std::clamp<int64_t>(w.logit_rows, 0, w.prompt);
  int64_t mine = 0;
  for (const parallel::TokenRange& t : ranges)
    mine += std::max<int64_t>(0, t.end - std::max(t.begin, w.prompt - kept));
  const int64_t rows = mine + (ranks > 1 && rank == 0 ? kept : 0);
  e.logits = uint64_t(rows) * uint64_t(info.hparams.n_vocab) * sizeof(float);
  return e;
}

void check_rank_memory(const ModelInfo& info, const parallel::Scheme& scheme,
                       const EngineOptions& opt, int ranks, int rank, Workload w, uint64_t budget,
                       const std::string& who, uint64_t baseline) {
  MemoryEstimate e = estimate_rank_memory(info, scheme, opt, ranks, rank, w);
  e.baseline = baseline;
  check_memory_budget(e, budget, who);
}

int64_t max_prompt_tokens(const ModelInfo& info, const parallel::Scheme& scheme,
                          const EngineOptions& opt, int ranks, uint64_t budget, uint64_t baseline) {
  auto fits = [&](int64_t n) {
    for (int r = 0; r < ranks; ++r)
      if (estimate_rank_memory(info, scheme, opt, ranks, r, Workload{n, 0, false}).total() +
              baseline > budget)
        return false;
    return true;
  };
  if (!fits(1)) return 0;
  int64_t lo = 1, hi = 2;
  while (fits(hi) && hi < (int64_t{1} << 26)) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

// ---- Session ----

namespace {
// Sets the engine's strategy for a scope (and restores the default also on errors).
struct AttentionScope {
  Engine& e;
  AttentionScope(Engine& engine, parallel::SequenceAttention* a) : e(engine) { e.set_attention(a); }
  ~AttentionScope() { e.set_attention(nullptr); }
};
}  // namespace

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& o,
                 comm::Communicator& comm)
    : model_(std::move(model)),
      opt_(o),
      comm_(&comm),
      scheme_(resolve_scheme(o.scheme, comm.size())),
      pool_(std::make_unique<kernels::ThreadPool>(o.threads)),
      engine_(std::make_unique<Engine>(*model_, *pool_)) {
  TD_CHECK(model_ != nullptr);
  if (o.sp_chunk < 0 && o.sp_chunk != parallel::kAutoSpChunk)
    bad_input("--sp-chunk {}: expected 0 (whole shard) or a token count", o.sp_chunk);
  scheme_.chunk = parallel::resolve_sp_chunk(o.sp_chunk, comm.size());
  engine_->set_options(opt_.engine);
}

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& o)
    : Session(std::move(model), o, comm::in_process_single()) {}

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& o,
                 std::unique_ptr<comm::Communicator> own)
    : Session(std::move(model), o, *own) {
  own_comm_ = std::move(own);
}

Session::~Session() = default;

MemoryEstimate Session::estimate(Workload w) const {
  MemoryEstimate e = estimate_rank_memory(ModelInfo::of(*model_), scheme_, opt_.engine,
                                          comm_->size(), comm_->rank(), w);
  e.baseline = baseline_rss();  // measured where the command marked it (0 otherwise)
  return e;
}

void Session::check_memory(Workload w) const {
  check_memory_budget(estimate(w), opt_.max_memory, comm_->who());
}

PrefillOutput Session::prefill(std::span<const int32_t> ids, int64_t n_logits, int64_t n_decode) {
  const int64_t n = int64_t(ids.size());
  const int64_t V = model_->hparams().n_vocab;
  const int P = comm_->size(), r = comm_->rank();
  TD_CHECK(n_logits >= 0 && n_logits <= n);
  PrefillOutput out;
  out.tokens = n;
  const int64_t band = parallel::scheme_band(scheme_, n, P);
  out.indices = parallel::shard_indices(n, P, r, scheme_.placement, band);
  const int64_t m = int64_t(out.indices.size());
  std::vector<int32_t> my_ids(static_cast<size_t>(m)), my_pos(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) {
    my_ids[size_t(i)] = ids[size_t(out.indices[size_t(i)])];
    my_pos[size_t(i)] = int32_t(out.indices[size_t(i)]);
  }
  // A cache of the capacity this prompt needs is emptied and kept (the session never forks
  // it, so its pool holds this sequence alone): its memory stays mapped. A new pool would
  // fault in and zero every page the prefill writes, again for each prompt: in a trace of
  // repeated 256-token prefills of the tiny model on 2 threads, the attention calls that
  // wrote fresh pages took 1.5-2.2 ms against 0.3 ms, about a fifth of the prefill.
  const int64_t capacity = parallel::scheme_cache_capacity(scheme_, n, n_decode, P, r);
  if (cache_.capacity() == capacity && capacity > 0) {
    cache_.truncate(0);
  } else {
    cache_ = KVCache();  // the previous sequence's pages go back first
    cache_ = engine_->make_cache(capacity);
  }
  // The tokens with logits are the last n_logits of the sequence: a suffix of this rank's
  // ascending indices.
  out.first_out = m;
  while (out.first_out > 0 && out.indices[size_t(out.first_out - 1)] >= n - n_logits) --out.first_out;
  const int64_t n_out = m - out.first_out;
  out.logits.resize(size_t(n_out * V));
  // The prefill strategy is made once and kept, as the cache is: its exchange and
  // receive buffers stay mapped. Made anew for each prompt, Ulysses' first layer took
  // 17 ms against 4.3 ms for the others (1024 tokens of the tiny model on 2 ranks,
  // faulting in the buffers the layers after it reuse).
  if (!prefill_attn_)
    prefill_attn_ = parallel::make_prefill_attention(scheme_, engine_->attn_shape(), *pool_, *comm_,
                                                     engine_->attention_kernel());
  parallel::SequenceAttention* attn = prefill_attn_.get();
  const uint64_t pairs_before = attn->head_pairs();
  AttentionScope scope(*engine_, attn);
  const Stopwatch sw;
  // Band after band (one forward step each; one band when the scheme does not chunk):
  // this rank's tokens of band b are a run of its ascending indices.
  int64_t i0 = 0;
  for (const parallel::TokenRange& b : parallel::bands_of(n, band)) {
    int64_t i1 = i0;
    while (i1 < m && out.indices[size_t(i1)] < b.end) ++i1;
    const int64_t from = std::max(i0, out.first_out);  // first row with logits
    const int64_t k = std::max<int64_t>(0, i1 - from);
    engine_->forward(cache_, std::span(my_ids).subspan(size_t(i0), size_t(i1 - i0)),
                     std::span(my_pos).subspan(size_t(i0), size_t(i1 - i0)), k,
                     k > 0 ? out.logits.data() + (from - out.first_out) * V : nullptr);
    i0 = i1;
  }
  out.seconds = sw.seconds();
  last_pairs_ = attn->head_pairs() - pairs_before;
  return out;
}

std::vector<float> Session::last_row(const PrefillOutput& part) {
  const int64_t V = model_->hparams().n_vocab;
  // The owner of the sequence's last token holds its row last.
  const bool mine = !part.logits.empty() && part.indices.back() == part.tokens - 1;
  std::vector<float> row(static_cast<size_t>(V));
  if (mine) std::copy(part.logits.end() - ptrdiff_t(V), part.logits.end(), row.begin());
  if (comm_->size() == 1) return row;
  // Everyone learns who owns the last token, then it broadcasts the row.
  int64_t owner = mine ? comm_->rank() : -1;
  comm_->allreduce(&owner, 1, comm::ReduceOp::Max);
  comm_->broadcast(row.data(), size_t(V) * sizeof(float), int(owner));
  return row;
}

std::vector<float> Session::gather_logits(PrefillOutput&& part) {
  return tandem::gather_logits(*comm_, std::move(part), model_->hparams().n_vocab);
}

namespace {
// Runs of consecutive positions in ascending indices: (first index in `idx`, length).
std::vector<std::pair<size_t, size_t>> consecutive_runs(std::span<const int64_t> idx) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t i = 0; i < idx.size(); ++i) {
    if (runs.empty() || idx[i] != idx[i - 1] + 1) runs.push_back({i, 0});
    ++runs.back().second;
  }
  return runs;
}
}  // namespace

std::vector<float> gather_logits(comm::Communicator& comm, PrefillOutput&& part, int64_t vocab) {
  const int P = comm.size(), me = comm.rank();
  const std::span<const int64_t> mine(part.indices.data() + part.first_out,
                                      part.indices.size() - size_t(part.first_out));
  if (P == 1) return std::move(part.logits);  // already in order
  // Every rank's row count; rank 0 then learns each one's positions, and receives each
  // run of consecutive positions into its place.
  std::vector<int64_t> counts(static_cast<size_t>(P), 0);
  counts[size_t(me)] = int64_t(mine.size());
  comm.allreduce(counts.data(), counts.size(), comm::ReduceOp::Sum);
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  constexpr int kTagIdx = 31, kTagRows = 32;
  const size_t row_bytes = size_t(vocab) * sizeof(float);
  if (me != 0) {
    if (mine.empty()) return {};
    comm.send(mine.data(), mine.size() * sizeof(int64_t), 0, kTagIdx);
    std::vector<std::unique_ptr<comm::Request>> reqs;
    for (const auto& [at, len] : consecutive_runs(mine))
      reqs.push_back(comm.isend(part.logits.data() + at * size_t(vocab), len * row_bytes, 0, kTagRows));
    comm.wait_all(reqs);
    return {};
  }
  // The rows are the last `total` positions: position i goes to row i - (N - total).
  const int64_t first = part.tokens - total;
  std::vector<float> out(size_t(total) * size_t(vocab));
  auto place = [&](int64_t pos) { return out.data() + size_t(pos - first) * size_t(vocab); };
  for (size_t i = 0; i < mine.size(); ++i)
    std::copy_n(part.logits.data() + i * size_t(vocab), vocab, place(mine[i]));
  part.logits = {};
  std::vector<int64_t> idx;
  for (int q = 1; q < P; ++q) {
    if (counts[size_t(q)] == 0) continue;
    idx.resize(size_t(counts[size_t(q)]));
    comm.recv(idx.data(), idx.size() * sizeof(int64_t), q, kTagIdx);
    std::vector<std::unique_ptr<comm::Request>> reqs;
    for (const auto& [at, len] : consecutive_runs(idx)) {
      if (idx[at] < first || idx[at + len - 1] >= part.tokens)
        fail(ErrorKind::Comm, "{}: gather_logits: rank {} sent positions outside the last {}",
             comm.who(), q, total);
      reqs.push_back(comm.irecv(place(idx[at]), len * row_bytes, q, kTagRows));
    }
    comm.wait_all(reqs);
  }
  return out;
}

GenerateStats Session::generate(std::span<const int32_t> prompt, const GenerateParams& params,
                                const std::function<void(int32_t)>& on_token,
                                std::vector<int32_t>* out) {
  if (prompt.empty()) bad_input("the prompt is empty (no tokens)");
  const bool local = scheme_.is("local");
  if (!params.kv_cache && !local)
    bad_input("--no-kv-cache recomputes the sequence on one rank (the local scheme), not under --sp {}",
              scheme_.name);
  GenerateStats st;
  st.n_prompt = int64_t(prompt.size());
  const Stopwatch total;
  const PrefillOutput pre = prefill(prompt, 1, params.n_predict);
  std::vector<float> logits = last_row(pre);
  st.prompt_seconds = pre.seconds;
  AttentionScope scope(*engine_, decode_attention());
  std::vector<int32_t> seq(prompt.begin(), prompt.end());  // for recomputation
  decode_loop(*engine_, cache_, logits, int32_t(prompt.size()), params, total, st, on_token,
              out, params.kv_cache ? nullptr : &seq);
  return st;
}

parallel::SequenceAttention* Session::decode_attention() {
  // Local decoding on the local scheme; against the KV cache sharded across ranks otherwise.
  if (scheme_.is("local")) return nullptr;
  if (!decode_attn_)
    decode_attn_ = std::make_unique<parallel::ShardedDecode>(engine_->attn_shape(), *pool_, *comm_);
  return decode_attn_.get();
}

void Session::decode_step(int32_t token, int32_t pos, float* logits) {
  if (pos < 0 || int64_t(pos) < cache_.size())
    fail(ErrorKind::Internal, "{}: decode_step at position {} but the KV cache holds {} tokens",
         comm_->who(), pos, cache_.size());
  AttentionScope scope(*engine_, decode_attention());
  engine_->forward(cache_, std::span<const int32_t>(&token, 1), std::span<const int32_t>(&pos, 1), 1,
                   logits);
}

ParallelResult Session::generate_parallel(std::span<const int32_t> prompt,
                                          const GenerateParams& params, int n_seq) {
  if (!scheme_.is("local") || comm_->size() != 1)
    bad_input("--parallel: several sequences run on one rank (the local scheme), not under --sp {}",
              scheme_.name);
  return tandem::generate_parallel(*engine_, prompt, params, n_seq, opt_.engine.kv);
}

}  // namespace tandem
