#pragma once
// runtime::Session: one model, the engine options, one sequence-parallel scheme and one
// communicator. It sizes the KV cache, makes the memory estimate, prefills, decodes and
// generates, and returns typed results (runtime/results.hpp). There is one path: a single
// rank is the `local` scheme on a one-rank communicator. Front ends (the CLI commands,
// compare, servers, trainers) talk to a Session, not to the engine's insides.
//
// Memory: estimate_memory()/check_memory() work from the GGUF metadata alone (ModelInfo),
// so a run that would not fit --max-memory is refused before the weights are loaded or
// any cache is allocated.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tandem/comm/communicator.hpp"
#include "tandem/parallel/scheme.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/generate.hpp"
#include "tandem/runtime/memory_estimate.hpp"
#include "tandem/runtime/results.hpp"

namespace tandem {

struct SessionOptions {
  EngineOptions engine;       // kernels, attention kernel, memory plan, fusion, reuse, KV layout
  int threads = 1;            // per rank
  std::string scheme;         // a registered spelling (--sp); empty: local on one rank, ring on more
  // Tokens per rank per prefill step (--sp-chunk; 0: whole shard; kAutoSpChunk: 512 / P,
  // at least 128: parallel::default_sp_chunk).
  int64_t sp_chunk = parallel::kAutoSpChunk;
  uint64_t max_memory = 0;    // per-rank budget in bytes; 0 = none
};

// The scheme of a run on `ranks` ranks (empty name: local on one rank, ring on more).
parallel::Scheme resolve_scheme(const std::string& name, int ranks, std::string_view flag = "--sp");

// Tokens a run plans for: a prompt and the tokens decoded after it; recompute: every
// decode step runs the whole sequence again (no KV cache; local only); the rows of
// logits the command keeps (those of the last logit_rows positions, gathered on rank 0).
struct Workload {
  int64_t prompt = 0;
  int64_t decode = 0;
  bool recompute = false;
  int64_t logit_rows = 1;
};

// Memory of rank `rank` of a `ranks`-rank run of `w` (weights, its KV shard as the cache
// options lay it out, activations of one forward step, the strategy's workspace, the
// prompt's ids and positions, the logits rows it holds: its own, and on rank 0 of several
// the gathered ones too).
MemoryEstimate estimate_rank_memory(const ModelInfo& info, const parallel::Scheme& scheme,
                                    const EngineOptions& opt, int ranks, int rank, Workload w);
// Throws Error(Resource) "<who>: needs X (...) but --max-memory is Y" when rank `rank`
// does not fit `budget` (0: no limit) with `baseline` bytes already resident (the
// process's measured resident set before the run; MemoryEstimate::baseline).
void check_rank_memory(const ModelInfo& info, const parallel::Scheme& scheme,
                       const EngineOptions& opt, int ranks, int rank, Workload w, uint64_t budget,
                       const std::string& who, uint64_t baseline = 0);
// The longest prompt whose estimate plus `baseline` fits `budget` on every rank (0 when
// one token does not).
int64_t max_prompt_tokens(const ModelInfo& info, const parallel::Scheme& scheme,
                          const EngineOptions& opt, int ranks, uint64_t budget,
                          uint64_t baseline = 0);

// The rows of logits a prefill gives this rank.
struct PrefillOutput {
  int64_t tokens = 0;            // N
  std::vector<int64_t> indices;  // global indices of the tokens this rank holds (ascending)
  int64_t first_out = 0;         // logits rows are those of indices[first_out..]
  std::vector<float> logits;     // [indices.size() - first_out][V]
  double seconds = 0;            // the forward pass on this rank
};

class Session {
 public:
  // A session on `comm` (not owned; every rank of it builds one). Collective where the
  // scheme's strategy splits the communicator (hybrid).
  Session(std::shared_ptr<const Model> model, const SessionOptions& o, comm::Communicator& comm);
  // One rank: the session owns a one-rank communicator.
  Session(std::shared_ptr<const Model> model, const SessionOptions& o);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Model& model() const { return *model_; }
  comm::Communicator& comm() { return *comm_; }
  const parallel::Scheme& scheme() const { return scheme_; }
  const SessionOptions& options() const { return opt_; }
  // The forward pass of this rank (benchmarks and tests look inside).
  Engine& engine() { return *engine_; }
  kernels::ThreadPool& pool() { return *pool_; }

  // This rank's memory for `w`, and the --max-memory check of it.
  MemoryEstimate estimate(Workload w) const;
  void check_memory(Workload w) const;

  // Prefills ids (positions 0..N-1) onto a new KV cache sized for N + n_decode tokens,
  // each rank running its shard, with the logits of the last n_logits tokens (0..N) on
  // the ranks that hold them. Collective.
  PrefillOutput prefill(std::span<const int32_t> ids, int64_t n_logits, int64_t n_decode = 0);
  // The last token's row (prefill with n_logits >= 1), on every rank. Collective.
  std::vector<float> last_row(const PrefillOutput& part);
  // Every rank's rows in global order ([n_logits][V]) on rank 0, empty elsewhere; takes
  // the rows (a single rank returns them without a copy). Collective.
  std::vector<float> gather_logits(PrefillOutput&& part);
  // The KV cache of the last prefill (or generation).
  const KVCache& cache() const { return cache_; }
  KVCache& cache() { return cache_; }

  // Prefill, then decoding (local attention on the local scheme, the KV cache sharded
  // across the ranks otherwise): every rank samples the same ids; on_token runs on every
  // rank. Collective.
  GenerateStats generate(std::span<const int32_t> prompt, const GenerateParams& params,
                         const std::function<void(int32_t)>& on_token,
                         std::vector<int32_t>* out = nullptr);
  // One decode step after prefill() (its n_decode reserved the room): `token` at position
  // `pos` into the KV cache (local on the local scheme, sharded across the ranks otherwise,
  // as generate() decodes), the next token's logits row ([vocab]) into `logits` on every
  // rank. Front ends that sample and stop themselves (tandem serve) drive this. Collective.
  void decode_step(int32_t token, int32_t pos, float* logits);
  // n_seq continuations of one prompt sharing its KV pages (local scheme only).
  ParallelResult generate_parallel(std::span<const int32_t> prompt, const GenerateParams& params,
                                   int n_seq);

  // A measured prefill of ids: every rank's report gathered to every rank (time, memory,
  // traffic, hidden communication). Collective.
  PrefillReport measure_prefill(std::span<const int32_t> ids);
  // This rank's memory now: the accounting (weights, KV cache, activations, the strategy's
  // workspace for the largest step of an n_prompt-token prefill) beside what its process
  // measures (RankReport::measure_process).
  RankReport memory_report(int64_t n_prompt) const;

 private:
  Session(std::shared_ptr<const Model> model, const SessionOptions& o,
          std::unique_ptr<comm::Communicator> own);

  std::shared_ptr<const Model> model_;
  SessionOptions opt_;
  std::unique_ptr<comm::Communicator> own_comm_;
  comm::Communicator* comm_;
  parallel::Scheme scheme_;
  std::unique_ptr<kernels::ThreadPool> pool_;
  std::unique_ptr<Engine> engine_;
  KVCache cache_;
  // The decode strategy (null on the local scheme), made on first use.
  parallel::SequenceAttention* decode_attention();
  std::unique_ptr<parallel::SequenceAttention> decode_attn_;
  // The prefill strategy (every scheme, local included), made on the first prompt.
  std::unique_ptr<parallel::SequenceAttention> prefill_attn_;
  uint64_t last_pairs_ = 0;  // head_pairs() of the last prefill's strategy
};

// Every rank's logits rows of `part` in global order ([rows][vocab]) on rank 0, an empty
// vector on the others. Rank 0 receives each run of consecutive positions straight into
// its place: it holds its own rows and the result, no other copy. Collective.
std::vector<float> gather_logits(comm::Communicator& comm, PrefillOutput&& part, int64_t vocab);

}  // namespace tandem
