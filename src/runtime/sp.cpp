#include "tandem/runtime/sp.hpp"

#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/parallel/sharded_decode.hpp"

namespace tandem {

namespace {
// Resets the engine's strategy when a scope ends (also on errors).
struct AttentionScope {
  Engine& e;
  AttentionScope(Engine& engine, parallel::SequenceAttention* a) : e(engine) { e.set_attention(a); }
  ~AttentionScope() { e.set_attention(nullptr); }
};
}  // namespace

ShardedPrefill sp_prefill(Engine& engine, KVCache& cache, comm::Communicator& comm,
                          const parallel::Scheme& scheme, std::span<const int32_t> ids,
                          LogitsWanted wanted) {
  const int64_t n = int64_t(ids.size());
  const int64_t V = engine.model().hparams().n_vocab;
  const int P = comm.size(), r = comm.rank();
  ShardedPrefill out;
  out.indices = parallel::shard_indices(n, P, r, scheme.placement);
  const int64_t m = int64_t(out.indices.size());
  std::vector<int32_t> my_ids(static_cast<size_t>(m)), my_pos(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) {
    my_ids[size_t(i)] = ids[size_t(out.indices[size_t(i)])];
    my_pos[size_t(i)] = int32_t(out.indices[size_t(i)]);
  }
  // The sequence's last token is the last of its owner's ascending indices.
  const bool owns_last = m > 0 && out.indices.back() == n - 1;
  const int64_t n_out = wanted == LogitsWanted::All ? m : (wanted == LogitsWanted::Last && owns_last ? 1 : 0);
  out.logits.resize(size_t(n_out * V));
  auto attn = parallel::make_prefill_attention(scheme, engine.attn_shape(), engine.pool(), comm);
  {
    AttentionScope scope(engine, attn.get());
    engine.forward(cache, my_ids, my_pos, n_out, out.logits.data());
  }
  if (wanted == LogitsWanted::Last) {
    // Everyone learns who owns the last token, then it broadcasts the row.
    int64_t owner = owns_last ? r : 0;
    comm.allreduce(&owner, 1, comm::ReduceOp::Max);
    out.logits.resize(size_t(V));
    comm.broadcast(out.logits.data(), size_t(V) * sizeof(float), int(owner));
  }
  return out;
}

std::vector<float> gather_logits(comm::Communicator& comm, const ShardedPrefill& part, int64_t n,
                                 int64_t vocab) {
  const int P = comm.size();
  // Every rank's indices, to put the rows in global order.
  std::vector<int64_t> counts(static_cast<size_t>(P), 0);
  counts[size_t(comm.rank())] = int64_t(part.indices.size());
  comm.allreduce(counts.data(), counts.size(), comm::ReduceOp::Sum);
  std::vector<size_t> idx_bytes(static_cast<size_t>(P)), idx_off(static_cast<size_t>(P));
  std::vector<size_t> row_bytes(static_cast<size_t>(P)), row_off(static_cast<size_t>(P));
  size_t total = 0;
  for (int q = 0; q < P; ++q) {
    idx_bytes[size_t(q)] = size_t(counts[size_t(q)]) * sizeof(int64_t);
    idx_off[size_t(q)] = total * sizeof(int64_t);
    row_bytes[size_t(q)] = size_t(counts[size_t(q)] * vocab) * sizeof(float);
    row_off[size_t(q)] = total * size_t(vocab) * sizeof(float);
    total += size_t(counts[size_t(q)]);
  }
  TD_CHECK(int64_t(total) == n);
  std::vector<int64_t> all_idx(total);
  comm.allgatherv(part.indices.data(), idx_bytes[size_t(comm.rank())], all_idx.data(), idx_bytes,
                  idx_off);
  std::vector<float> rows(total * size_t(vocab));
  comm.allgatherv(part.logits.data(), row_bytes[size_t(comm.rank())], rows.data(), row_bytes,
                  row_off);
  std::vector<float> ordered(rows.size());
  for (size_t i = 0; i < total; ++i)
    std::copy(rows.begin() + ptrdiff_t(i * size_t(vocab)), rows.begin() + ptrdiff_t((i + 1) * size_t(vocab)),
              ordered.begin() + ptrdiff_t(size_t(all_idx[i]) * size_t(vocab)));
  return ordered;
}

int64_t sp_cache_capacity(int64_t n_prompt, int64_t n_decode, int ranks, int rank,
                          const parallel::Scheme& scheme) {
  int64_t cap = int64_t(parallel::shard_indices(n_prompt, ranks, rank, scheme.placement).size());
  for (int64_t p = n_prompt; p < n_prompt + n_decode; ++p)
    if (p % ranks == rank) ++cap;
  return cap;
}

namespace {
MemoryEstimate rank_estimate(const Model& model, int ranks, int rank,
                             const parallel::Scheme& scheme, int64_t n_prompt, int64_t n_decode) {
  const int64_t shard = int64_t(parallel::shard_indices(n_prompt, ranks, rank, scheme.placement).size());
  const int64_t cache = sp_cache_capacity(n_prompt, n_decode, ranks, rank, scheme);
  const uint64_t workspace = parallel::scheme_workspace_bytes(
      scheme, shape_of(model.hparams()), shard, n_prompt, ranks);
  return estimate_memory(model, shard, cache, workspace);
}
}  // namespace

MemoryEstimate sp_memory_estimate(const Model& model, const comm::Communicator& comm,
                                  const parallel::Scheme& scheme, int64_t n_prompt,
                                  int64_t n_decode) {
  return rank_estimate(model, comm.size(), comm.rank(), scheme, n_prompt, n_decode);
}

int64_t sp_max_tokens(const Model& model, int ranks, const parallel::Scheme& scheme,
                      uint64_t budget) {
  auto fits = [&](int64_t n) {
    for (int r = 0; r < ranks; ++r)
      if (rank_estimate(model, ranks, r, scheme, n, 0).total() > budget) return false;
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

double sp_comm_alone_seconds(comm::Communicator& comm, uint64_t bytes, uint64_t messages) {
  // Every rank must run the same number of exchanges: agree on the largest sample.
  int64_t agreed[2] = {int64_t(messages), int64_t(messages ? bytes / messages : 0)};
  comm.allreduce(agreed, 2, comm::ReduceOp::Max);
  const int64_t total_msgs = agreed[0], msg_bytes = agreed[1];
  if (comm.size() < 2 || total_msgs == 0 || msg_bytes == 0) return 0;
  const int64_t sample = std::min<int64_t>(total_msgs, 8);
  std::vector<char> sbuf(static_cast<size_t>(msg_bytes)), rbuf(static_cast<size_t>(msg_bytes));
  const int P = comm.size(), r = comm.rank();
  comm.barrier();
  const Stopwatch sw;
  for (int64_t i = 0; i < sample; ++i)
    comm.sendrecv(sbuf.data(), sbuf.size(), (r + 1) % P, rbuf.data(), rbuf.size(), (r + P - 1) % P, 7);
  const double per_msg = sw.seconds() / double(sample);
  // This rank's bytes at the sampled rate (the sample used the largest average message).
  return per_msg * double(bytes) / double(msg_bytes);
}

GenerateStats sp_generate(Engine& engine, KVCache& cache, comm::Communicator& comm,
                          const parallel::Scheme& scheme, std::span<const int32_t> prompt,
                          const GenerateParams& params,
                          const std::function<void(int32_t)>& on_token,
                          std::vector<int32_t>* out) {
  if (prompt.empty()) bad_input("the prompt is empty (no tokens)");
  GenerateStats st;
  st.n_prompt = int64_t(prompt.size());
  const Stopwatch total;
  const Stopwatch sw;
  ShardedPrefill pre = sp_prefill(engine, cache, comm, scheme, prompt, LogitsWanted::Last);
  st.prompt_seconds = sw.seconds();
  parallel::ShardedDecode decode(engine.attn_shape(), engine.pool(), comm);
  AttentionScope scope(engine, &decode);
  decode_loop(engine, cache, pre.logits, int32_t(prompt.size()), params, total, st, on_token, out);
  return st;
}

}  // namespace tandem
