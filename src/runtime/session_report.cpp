// Session::measure_prefill: one prefill, measured on every rank and gathered.
#include <type_traits>

#include "tandem/core/process_memory.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/runtime/session.hpp"

namespace tandem {

RankReport Session::memory_report(int64_t n) const {
  const comm::Communicator& comm = *comm_;
  RankReport rep;
  rep.rank = comm.rank();
  // The file's mapping less what was dropped, plus the weight arena's resident pages.
  rep.weights_bytes = double(model_->resident_weight_bytes());
  rep.kv_bytes = double(cache_.bytes());
  rep.activation_bytes = double(engine_->activation_bytes());
  // The strategy's buffers for its largest step (a band's share when the prefill chunks).
  if (n > 0)
    rep.workspace_bytes = double(parallel::scheme_workspace_bytes(
        scheme_, engine_->attn_shape(),
        parallel::scheme_step_tokens(scheme_, n, comm.size(), comm.rank()), n, comm.size()));
  rep.process_ranks = comm.backend() == "in-process" ? double(comm.size()) : 1.0;
  rep.measure_process();
  return rep;
}

PrefillReport Session::measure_prefill(std::span<const int32_t> ids) {
  comm::Communicator& comm = *comm_;
  comm.barrier();
  comm.reset_stats();
  const Stopwatch sw;
  const PrefillOutput part = prefill(ids, 1);
  (void)last_row(part);  // on every rank, as generation needs it
  const double seconds = sw.seconds();
  RankReport rep = memory_report(int64_t(ids.size()));
  rep.seconds = seconds;
  rep.tokens = int64_t(part.indices.size());
  rep.activation_unplanned_bytes = double(engine_->activation_unplanned_bytes());
  const comm::CommStats traffic = comm.stats();
  rep.bytes_sent = double(traffic.bytes_sent);
  rep.bytes_received = double(traffic.bytes_received);
  rep.comm_wait_seconds = traffic.wait_seconds;
  rep.comm_transfer_seconds = traffic.transfer_seconds;
  rep.head_pairs = double(last_pairs_);
  // Every rank's report, on every rank (the same binary: the struct's bytes travel).
  static_assert(std::is_trivially_copyable_v<RankReport>);
  PrefillReport out;
  out.per_rank.resize(size_t(comm.size()));
  std::vector<size_t> bytes(out.per_rank.size(), sizeof(RankReport)), offs(out.per_rank.size());
  for (size_t r = 0; r < offs.size(); ++r) offs[r] = r * sizeof(RankReport);
  comm.allgatherv(&rep, sizeof rep, out.per_rank.data(), bytes, offs);
  out.model = model_->file().path();
  out.scheme = scheme_.name;
  out.ranks = comm.size();
  out.threads_per_rank = opt_.threads;
  out.tokens = int64_t(ids.size());
  for (const RankReport& r : out.per_rank) out.seconds = std::max(out.seconds, r.seconds);
  out.tokens_per_s = out.seconds > 0 ? double(out.tokens) / out.seconds : 0;
  return out;
}

}  // namespace tandem
