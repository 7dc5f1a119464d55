// tandem prefill: one long prefill, single rank or sequence-parallel, with time,
// throughput, per-rank memory and communication.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "commands.hpp"
#include "common.hpp"
#include "session_cli.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/process_memory.hpp"
#include "tandem/core/size.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::cli {
namespace {

struct Opts {
  std::string model, prompt_file;
  int64_t random_tokens = 0;
  uint64_t seed = 1234;
  bool json = false;
  bool fit = false;
  SessionFlags session;
  std::string trace;
  int warmup = 0, repeat = 1;
};

// --warmup W untimed prefills, then --repeat R timed ones: the report of the median run
// (by the slowest rank's time; the lower middle one for even R), with every timed run's
// seconds and the process's first prefill beside it. Collective.
PrefillReport measure_repeated(Session& s, std::span<const int32_t> ids, int warmup, int repeat) {
  std::vector<PrefillReport> runs;
  double first = 0;
  for (int i = 0; i < warmup + repeat; ++i) {
    PrefillReport r = s.measure_prefill(ids);
    if (i == 0) first = r.seconds;
    if (i >= warmup) runs.push_back(std::move(r));
  }
  if (warmup == 0 && repeat == 1) return std::move(runs.front());
  std::vector<size_t> order(runs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return runs[a].seconds < runs[b].seconds; });
  PrefillReport out = std::move(runs[order[(order.size() - 1) / 2]]);
  out.warmup = warmup;
  out.first_seconds = first;
  for (const PrefillReport& r : runs) out.seconds_each.push_back(r.seconds);
  if (out.seconds_each.empty()) out.seconds_each.push_back(out.seconds);
  return out;
}

// `text`: the content of --prompt-file, read before the model is loaded.
std::vector<int32_t> prompt_ids(const Opts& o, const Model& m, const std::string& text) {
  if (!o.prompt_file.empty()) {
    const Tokenizer* tok = m.tokenizer();
    if (!tok) bad_input("{}: the model has no tokenizer; use --random-tokens", o.model);
    return tok->encode(text, true);
  }
  return random_token_ids(o.random_tokens, m.hparams().n_vocab, o.seed);
}

void print_report(const Opts& o, const PrefillReport& r) {
  if (o.json) {
    fmt::print("{}\n", to_json(r).dump(2));
    return;
  }
  fmt::print("prefill of {} tokens, scheme {}, {} rank(s) x {} thread(s): {:.3f} s, {:.1f} tokens/s\n",
             r.tokens, r.scheme, r.ranks, r.threads_per_rank, r.seconds, r.tokens_per_s);
  if (!r.seconds_each.empty()) {
    std::string each;
    for (double x : r.seconds_each) each += fmt::format("{}{:.3f}", each.empty() ? "" : " ", x);
    fmt::print("median of {} timed prefill(s) after {} untimed: {} s; the process's first took {:.3f} s\n",
               r.seconds_each.size(), r.warmup, each, r.first_seconds);
  }
  fmt::print("{:>4} {:>8} {:>9} {:>11} {:>9} {:>12} {:>11} {:>11} {:>11} {:>10} {:>8}\n", "rank",
             "tokens", "seconds", "weights MiB", "KV MiB", "activ. MiB", "sent MiB", "recv MiB",
             "in flight s", "wait s", "hidden");
  constexpr double MiB = 1 << 20;
  double planned = 0, unplanned = 0;
  for (const RankReport& x : r.per_rank) {
    fmt::print("{:>4} {:>8} {:>9.3f} {:>11.1f} {:>9.1f} {:>12.1f} {:>11.2f} {:>11.2f} {:>11.3f} {:>10.3f} {:>7.0f}%\n",
               x.rank, x.tokens, x.seconds, x.weights_bytes / MiB, x.kv_bytes / MiB,
               x.activation_bytes / MiB, x.bytes_sent / MiB, x.bytes_received / MiB,
               x.comm_transfer_seconds, x.comm_wait_seconds, 100.0 * x.hidden_fraction());
    planned = std::max(planned, x.activation_bytes);
    unplanned = std::max(unplanned, x.activation_unplanned_bytes);
  }
  if (r.ranks > 1)
    fmt::print("in flight: time a rank's messages and collectives were under way (post to observed "
               "completion, concurrent ones once); wait: time it was blocked on them; hidden = 1 - "
               "wait / in flight\n");
  fmt::print("activation buffers (largest rank): {:.2f} MiB planned vs {:.2f} MiB one buffer per "
             "value\n", planned / MiB, unplanned / MiB);
  // The accounting beside what the operating system measured, per process.
  for (const RankReport& x : r.per_rank) {
    if (x.peak_rss_bytes <= 0) continue;
    const std::string who = x.process_ranks > 1
                                ? fmt::format("process of {:.0f} ranks", x.process_ranks)
                                : fmt::format("rank {}", x.rank);
    fmt::print("{}: {}\n", who, x.describe_memory());
    if (x.process_ranks > 1) break;  // the same process for every rank
  }
}

// Gathers every rank's spans (as text) to rank 0, which writes one Chrome trace file
// with a process per rank (thread 0 compute, thread 1 communication).
void write_trace(comm::Communicator& comm, const Trace& trace, const std::string& path) {
  double origin = trace.spans().empty() ? now_seconds() : trace.spans().front().begin;
  comm.allreduce(&origin, 1, comm::ReduceOp::Max);  // same clock on one host; a rough origin across hosts
  const std::string mine = trace.chrome_events(comm.rank(), origin);
  std::vector<int64_t> lens(static_cast<size_t>(comm.size()), 0);
  lens[size_t(comm.rank())] = int64_t(mine.size());
  comm.allreduce(lens.data(), lens.size(), comm::ReduceOp::Sum);
  std::vector<size_t> bytes(lens.size()), offs(lens.size());
  size_t total = 0;
  for (size_t r = 0; r < lens.size(); ++r) {
    bytes[r] = size_t(lens[r]);
    offs[r] = total;
    total += bytes[r];
  }
  std::string all(total, ' ');
  comm.allgatherv(mine.data(), mine.size(), all.data(), bytes, offs);
  if (comm.rank() != 0) return;
  std::string events;
  for (size_t r = 0; r < lens.size(); ++r) {
    if (bytes[r] == 0) continue;
    if (!events.empty()) events += ",\n";
    events.append(all, offs[r], bytes[r]);
  }
  std::string meta;
  for (int r = 0; r < comm.size(); ++r) {
    meta += fmt::format(R"({{"name":"process_name","ph":"M","pid":{},"args":{{"name":"rank {}"}}}},)", r, r);
    meta += fmt::format(R"({{"name":"thread_name","ph":"M","pid":{},"tid":0,"args":{{"name":"compute"}}}},)", r);
    meta += fmt::format(R"({{"name":"thread_name","ph":"M","pid":{},"tid":1,"args":{{"name":"communication"}}}},)", r);
    meta += "\n";
  }
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) bad_input("--trace {}: cannot create: {}", path, std::strerror(errno));
  fmt::print(f, "{{\"traceEvents\":[\n{}{}\n],\"displayTimeUnit\":\"ms\"}}\n", meta, events);
  std::fclose(f);
}

void run(const Opts& o) {
  // The prompt file first: one over the limit is refused before the model is loaded.
  const std::string text =
      o.prompt_file.empty() ? std::string() : read_text_flag(o.prompt_file, "--prompt-file");
  const std::shared_ptr<Model> model = Model::load(o.model);
  const uint64_t budget = o.session.sp.max_memory;
  // --fit: the longest random prompt whose estimate fits the budget on every rank of the
  // run (from the model's metadata; every rank computes the same).
  auto tokens = [&](const parallel::Scheme& scheme, const EngineOptions& eo, int ranks) {
    if (!o.fit) return int64_t(0);
    mark_baseline_rss();  // the first figure is kept: every call sees the same baseline
    const int64_t n =
        max_prompt_tokens(ModelInfo::of(*model), scheme, eo, ranks, budget, baseline_rss());
    if (n == 0)
      fail(ErrorKind::Resource, "--max-memory {}: not even one token fits", format_size(double(budget)));
    return n;
  };
  const std::vector<int32_t> given = o.fit ? std::vector<int32_t>{} : prompt_ids(o, *model, text);
  if (!o.fit && given.empty()) bad_input("prefill: the prompt has no tokens");
  const auto workload = [&](const parallel::Scheme& scheme, const EngineOptions& eo, int ranks) {
    return Workload{o.fit ? tokens(scheme, eo, ranks) : int64_t(given.size()), 0, false};
  };
  run_sessions(model, o.session, workload, [&](Session& s) {
    std::vector<int32_t> fitted;
    if (o.fit) {
      Opts opts = o;
      opts.random_tokens = tokens(s.scheme(), s.options().engine, s.comm().size());
      fitted = prompt_ids(opts, *model, text);
    }
    const std::vector<int32_t>& ids = o.fit ? fitted : given;
    Trace trace;
    if (!o.trace.empty()) {
      s.engine().set_trace(&trace);
      s.comm().set_trace(&trace);
    }
    const PrefillReport report = measure_repeated(s, ids, o.warmup, o.repeat);
    s.engine().set_trace(nullptr);
    s.comm().set_trace(nullptr);
    if (s.comm().rank() == 0) print_report(o, report);
    if (!o.trace.empty()) write_trace(s.comm(), trace, o.trace);
  });
}

}  // namespace

void add_prefill(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("prefill", "Run one long prefill (single rank or sequence-parallel)");
  sub->add_option("-m,--model", o->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  auto* pf = sub->add_option("--prompt-file", o->prompt_file, "Text file to prefill")
                 ->check(CLI::ExistingFile);
  auto* rt = sub->add_option("--random-tokens", o->random_tokens, "Prefill N random token ids")
                 ->check(int_in(1, int64_t{1} << 26));
  pf->excludes(rt);
  sub->add_option("--seed", o->seed, "Seed for --random-tokens (default 1234)");
  sub->add_flag("--json", o->json, "Print the report as JSON");
  sub->add_flag("--fit", o->fit,
                "Prefill the longest random prompt that fits --max-memory per rank (under the "
                "scheme of --sp: local on one rank, ring on more)");
  sub->add_option("--warmup", o->warmup,
                  "Untimed prefills of the same prompt before the timed ones (default 0)")
      ->check(CLI::Range(0, 100));
  sub->add_option("--repeat", o->repeat,
                  "Timed prefills; the report is the median one's, with each time (default 1)")
      ->check(CLI::Range(1, 100));
  add_session_options(sub, o->session);
  sub->add_option("--trace", o->trace,
                  "Write a Chrome/Perfetto trace JSON of every rank's compute and communication");
  sub->callback([o, pf, rt] {
    if (o->fit && (pf->count() || rt->count()))
      bad_input("--fit: chooses the prompt length itself; drop --prompt-file/--random-tokens");
    if (o->fit && o->session.sp.max_memory == 0) bad_input("--fit: needs --max-memory");
    if (pf->count() == 0 && rt->count() == 0 && !o->fit)
      bad_input("prefill: give --prompt-file, --random-tokens or --fit");
    run(*o);
  });
}

}  // namespace tandem::cli
