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
#include "sp_cli.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/size.hpp"
#include "tandem/core/timer.hpp"
#include "tandem/runtime/sp.hpp"

namespace tandem::cli {
namespace {

struct Opts {
  std::string model, prompt_file;
  int64_t random_tokens = 0;
  uint64_t seed = 1234;
  int threads = 1;
  bool json = false;
  bool fit = false;
  SpOptions sp;
  EngineFlags engine;
  std::string trace;
};

// What one rank measured; gathered to every rank as doubles.
struct RankReport {
  double tokens, seconds, weights_bytes, kv_bytes, activation_bytes, bytes_sent, bytes_received,
      comm_wait_seconds, comm_alone_seconds;
  // Activation buffers one per value would take (what the memory plan saves against).
  double activation_unplanned_bytes;
  // Share of the communication that compute hid: 1 - waited / (time it takes alone).
  double hidden() const {
    return comm_alone_seconds > 0 ? std::clamp(1.0 - comm_wait_seconds / comm_alone_seconds, 0.0, 1.0) : 0.0;
  }
};
constexpr size_t kFields = sizeof(RankReport) / sizeof(double);

std::vector<int32_t> prompt_ids(const Opts& o, const Model& m) {
  if (!o.prompt_file.empty()) {
    const Tokenizer* tok = m.tokenizer();
    if (!tok) bad_input("{}: the model has no tokenizer; use --random-tokens", o.model);
    return tok->encode(read_file(o.prompt_file), true);
  }
  return random_token_ids(o.random_tokens, m.hparams().n_vocab, o.seed);
}

void print_report(const Opts& o, const std::string& scheme, int64_t n,
                  const std::vector<RankReport>& ranks) {
  double secs = 0;
  for (const auto& r : ranks) secs = std::max(secs, r.seconds);
  const double tps = secs > 0 ? double(n) / secs : 0;
  if (o.json) {
    nlohmann::json j;
    j["model"] = o.model;
    j["tokens"] = n;
    j["scheme"] = scheme;
    j["ranks"] = ranks.size();
    j["threads_per_rank"] = o.threads;
    j["seconds"] = secs;
    j["tokens_per_s"] = tps;
    for (size_t r = 0; r < ranks.size(); ++r) {
      const auto& x = ranks[r];
      j["per_rank"].push_back({{"rank", r},
                               {"tokens", int64_t(x.tokens)},
                               {"seconds", x.seconds},
                               {"weights_bytes", uint64_t(x.weights_bytes)},
                               {"kv_bytes", uint64_t(x.kv_bytes)},
                               {"activation_bytes", uint64_t(x.activation_bytes)},
                               {"activation_unplanned_bytes", uint64_t(x.activation_unplanned_bytes)},
                               {"bytes_sent", uint64_t(x.bytes_sent)},
                               {"bytes_received", uint64_t(x.bytes_received)},
                               {"comm_wait_seconds", x.comm_wait_seconds},
                               {"comm_alone_seconds", x.comm_alone_seconds},
                               {"comm_hidden_fraction", x.hidden()}});
    }
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("prefill of {} tokens, scheme {}, {} rank(s) x {} thread(s): {:.3f} s, {:.1f} tokens/s\n",
             n, scheme, ranks.size(), o.threads, secs, tps);
  fmt::print("{:>4} {:>8} {:>9} {:>11} {:>9} {:>12} {:>11} {:>11} {:>10} {:>8}\n", "rank", "tokens",
             "seconds", "weights MiB", "KV MiB", "activ. MiB", "sent MiB", "recv MiB", "wait s",
             "hidden");
  constexpr double MiB = 1 << 20;
  for (size_t r = 0; r < ranks.size(); ++r) {
    const auto& x = ranks[r];
    fmt::print("{:>4} {:>8} {:>9.3f} {:>11.1f} {:>9.1f} {:>12.1f} {:>11.2f} {:>11.2f} {:>10.3f} {:>7.0f}%\n", r,
               int64_t(x.tokens), x.seconds, x.weights_bytes / MiB, x.kv_bytes / MiB,
               x.activation_bytes / MiB, x.bytes_sent / MiB, x.bytes_received / MiB,
               x.comm_wait_seconds, 100.0 * x.hidden());
  }
  double planned = 0, unplanned = 0;
  for (const auto& r : ranks) {
    planned = std::max(planned, r.activation_bytes);
    unplanned = std::max(unplanned, r.activation_unplanned_bytes);
  }
  fmt::print("activation buffers (largest rank): {:.2f} MiB planned vs {:.2f} MiB one buffer per "
             "value\n", planned / MiB, unplanned / MiB);
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
  const auto model = load_model(o.model);
  run_world(o.sp, [&](comm::Communicator& comm) {
    const auto scheme = scheme_of(o.sp, comm);
    Opts opts = o;
    if (o.fit) {
      // The longest random prompt whose per-rank estimate fits the budget (same on all ranks).
      opts.random_tokens = sp_max_tokens(*model, comm.size(), scheme, o.sp.max_memory);
      if (opts.random_tokens == 0)
        fail(ErrorKind::Resource, "--max-memory {}: not even one token fits",
             format_size(double(o.sp.max_memory)));
    }
    const auto ids = prompt_ids(opts, *model);
    const int64_t n = int64_t(ids.size());
    if (n == 0) bad_input("prefill: the prompt has no tokens");
    kernels::ThreadPool pool(o.threads);
    Engine engine(*model, pool);
    const bool single = comm.size() == 1 && o.sp.sp.empty() && !o.fit;
    engine.set_options(o.engine.options(single));
    Trace trace;
    if (!o.trace.empty()) {
      engine.set_trace(&trace);
      comm.set_trace(&trace);
    }
    const MemoryEstimate need = single ? estimate_memory(*model, std::min(n, Engine::kDefaultChunk), n, 0, engine.options().kv.type, engine.options().kv.page_tokens)
                                       : sp_memory_estimate(*model, comm, scheme, n, 0);
    check_memory_budget(need, o.sp.max_memory, comm.who());
    KVCache cache = engine.make_cache(single ? n : sp_cache_capacity(n, 0, comm.size(), comm.rank(), scheme));
    std::vector<float> logits(static_cast<size_t>(model->hparams().n_vocab));
    comm.barrier();
    comm.reset_stats();
    const Stopwatch sw;
    RankReport rep{};
    if (single) {
      std::vector<int32_t> pos(ids.size());
      std::iota(pos.begin(), pos.end(), 0);
      engine.forward(cache, ids, pos, 1, logits.data());
      rep.tokens = double(n);
    } else {
      const auto part = sp_prefill(engine, cache, comm, scheme, ids, LogitsWanted::Last);
      rep.tokens = double(part.indices.size());
    }
    rep.seconds = sw.seconds();
    engine.set_trace(nullptr);
    comm.set_trace(nullptr);
    // The file's mapping less the ranges dropped after copying, plus the weight arena.
    rep.weights_bytes = double(model->resident_weight_bytes());
    rep.kv_bytes = double(cache.bytes());
    rep.activation_bytes = double(engine.activation_bytes());
    rep.activation_unplanned_bytes = double(engine.activation_unplanned_bytes());
    rep.bytes_sent = double(comm.stats().bytes_sent);
    rep.bytes_received = double(comm.stats().bytes_received);
    rep.comm_wait_seconds = comm.stats().wait_seconds;
    const auto traffic = comm.stats();
    rep.comm_alone_seconds = sp_comm_alone_seconds(comm, traffic.bytes_sent, traffic.messages);
    std::vector<RankReport> all(static_cast<size_t>(comm.size()));
    std::vector<size_t> bytes(all.size(), sizeof(RankReport)), offs(all.size());
    for (size_t r = 0; r < all.size(); ++r) offs[r] = r * sizeof(RankReport);
    static_assert(kFields * sizeof(double) == sizeof(RankReport));
    comm.allgatherv(&rep, sizeof rep, all.data(), bytes, offs);
    if (comm.rank() == 0) print_report(o, single ? "single" : scheme.name, n, all);
    if (!o.trace.empty()) write_trace(comm, trace, o.trace);
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
                 ->check(CLI::Range(int64_t{1}, int64_t{1} << 26));
  pf->excludes(rt);
  sub->add_option("--seed", o->seed, "Seed for --random-tokens (default 1234)");
  add_threads_option(sub, o->threads);
  sub->add_flag("--json", o->json, "Print the report as JSON");
  sub->add_flag("--fit", o->fit,
                "Prefill the longest random prompt that fits --max-memory per rank (scheme "
                "--sp, ring by default)");
  add_sp_options(sub, o->sp);
  add_engine_options(sub, o->engine);
  sub->add_option("--trace", o->trace,
                  "Write a Chrome/Perfetto trace JSON of every rank's compute and communication");
  sub->callback([o, pf, rt] {
    if (o->fit && (pf->count() || rt->count()))
      bad_input("--fit: chooses the prompt length itself; drop --prompt-file/--random-tokens");
    if (o->fit && o->sp.max_memory == 0) bad_input("--fit: needs --max-memory");
    if (pf->count() == 0 && rt->count() == 0 && !o->fit)
      bad_input("prefill: give --prompt-file, --random-tokens or --fit");
    run(*o);
  });
}

}  // namespace tandem::cli
