// tandem bench: prefill (pp N) and generation (tg N) throughput at a cache depth, in the
// manner of llama-bench, each row set against this machine's roofline; and
// `tandem bench --roofline`, which measures that roofline (read bandwidth, FMA peak).
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "session_cli.hpp"
#include "tandem/runtime/session.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/analysis/ablation.hpp"
#include "tandem/analysis/bench.hpp"
#include "tandem/analysis/roofline.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/process_memory.hpp"

namespace tandem::cli {
namespace {

using analysis::BenchResult;
using analysis::BenchTest;
using analysis::Roofline;

struct Opts {
  std::string model, roofline_file;
  std::vector<int64_t> prompt{512}, gen{128}, depth{0};
  int threads = 1;
  int repeats = 5;
  int64_t roofline_mib = 1024;
  uint64_t seed = 1234;
  bool json = false;
  bool roofline = false;
  bool ablation = false;
  bool prompt_set = false, gen_set = false;
  EngineFlags engine;
};

std::string roofline_path(const Opts& o) {
  return o.roofline_file.empty() ? analysis::default_roofline_path() : o.roofline_file;
}

Roofline measure(const Opts& o, const std::string& path) {
  // The buffer is touched in full: refuse one that would not fit beside everything else.
  const double phys = double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGE_SIZE));
  if (phys > 0 && double(o.roofline_mib) * (1 << 20) > phys / 2)
    bad_input("--roofline-mib {}: more than half of this machine's memory ({} MiB)", o.roofline_mib,
              int64_t(phys) >> 20);
  analysis::RooflineOptions ro;
  ro.threads = o.threads;
  ro.buffer_bytes = size_t(o.roofline_mib) << 20;
  const auto r = analysis::measure_roofline(ro);
  analysis::save_roofline(path, r);
  return r;
}

void print_roofline(const Roofline& r, const std::string& path, bool measured) {
  fmt::print("roofline ({} thread(s), {}, {} MiB buffer){}: read bandwidth {:.2f} GB/s, "
             "FMA peak {:.1f} GFLOP/s\n",
             r.threads, r.isa, r.buffer_bytes >> 20, measured ? " measured" : "", r.read_bandwidth / 1e9,
             r.fma_peak / 1e9);
  fmt::print("saved in {}\n", path);
}

// The roofline for o.threads: from the cache file, else measured now (and saved).
Roofline roofline_for(const Opts& o) {
  const auto path = roofline_path(o);
  if (const auto r = analysis::find_roofline(analysis::load_rooflines(path), o.threads)) return *r;
  fmt::print(stderr, "bench: no roofline for {} thread(s) in {}; measuring it first (bench --roofline)\n",
             o.threads, path);
  std::fflush(stderr);
  return measure(o, path);
}

std::vector<BenchTest> tests_of(const Opts& o) {
  std::vector<BenchTest> tests;
  for (const int64_t d : o.depth) {
    for (const int64_t p : o.prompt)
      if (p > 0) tests.push_back({BenchTest::Kind::Prefill, p, d});
    for (const int64_t n : o.gen)
      if (n > 0) tests.push_back({BenchTest::Kind::Generate, n, d});
  }
  return tests;
}

std::string weight_type(const Model& m) {
  return m.layers.empty() ? "?" : std::string(dtype_name(m.layers[0].wq.type));
}

nlohmann::ordered_json row_json(const Opts& o, const Model& m, const BenchResult& r, const Roofline& roof) {
  const auto pt = analysis::roofline_point(m, r.test, r.median, roof, o.engine.options().kv.type);
  const bool pp = r.test.kind == BenchTest::Kind::Prefill;
  nlohmann::ordered_json j{{"test", r.test.name()},
                   {"model", o.model},
                   {"model_type", weight_type(m)},
                   {"weight_bytes", m.weight_bytes()},
                   {"n_prompt", pp ? r.test.n : 0},
                   {"n_gen", pp ? 0 : r.test.n},
                   {"depth", r.test.depth},
                   {"threads", o.threads},
                   {"repeats", r.tokens_per_s.size()},
                   {"tokens_per_s", r.median},
                   {"tokens_per_s_min", r.min},
                   {"tokens_per_s_max", r.max},
                   {"tokens_per_s_mean", r.mean},
                   {"tokens_per_s_stddev", r.stddev},
                   {"samples_tokens_per_s", r.tokens_per_s},
                   {"roofline_bound", pt.bandwidth_bound ? "bandwidth" : "fma"},
                   {"roofline_bound_tokens_per_s", pt.bound_tokens_per_s},
                   {"roofline_fraction", pt.fraction},
                   {"read_bandwidth", roof.read_bandwidth},
                   {"fma_peak", roof.fma_peak},
                   {"kv_page", o.engine.options().kv.page_tokens},
                   {"kv_type", std::string(dtype_name(o.engine.options().kv.type))}};
  if (pt.bandwidth_bound) {
    j["bytes_per_token"] = pt.cost_per_token;
    j["achieved_bytes_per_s"] = pt.achieved;
    j["bandwidth_fraction"] = pt.fraction;
  } else {
    j["flops_per_token"] = pt.cost_per_token;
    j["achieved_flops"] = pt.achieved;
    j["fma_peak_fraction"] = pt.fraction;
  }
  return j;
}

void print_table(const Opts& o, const Model& m, const std::vector<BenchResult>& rows,
                 const Roofline& roof) {
  const auto path = roofline_path(o);
  fmt::print("model {} ({}, {:.1f} MiB of matrices read per token), {} thread(s), {} repeat(s)\n",
             o.model, weight_type(m), double(m.weight_bytes()) / (1 << 20), o.threads, o.repeats);
  const KVCacheOptions kv = o.engine.options().kv;
  fmt::print("KV cache: {}, {} rows\n", kv.page_tokens > 0 ? fmt::format("pages of {} tokens", kv.page_tokens) : std::string("contiguous"),
             dtype_name(kv.type));
  fmt::print("roofline: read {:.2f} GB/s, FMA peak {:.1f} GFLOP/s ({}, from {})\n\n",
             roof.read_bandwidth / 1e9, roof.fma_peak / 1e9, roof.isa, path);
  fmt::print("| {:>14} | {:>10} | {:>10} | {:>10} | {:>9} | {:>12} | {:>14} | {:>7} |\n", "test",
             "t/s", "min", "max", "stddev", "bound", "bound t/s", "of bound");
  fmt::print("|{:-<16}|{:->12}|{:->12}|{:->12}|{:->11}|{:->14}|{:->16}|{:->9}|\n", "", "", "", "",
             "", "", "", "");
  for (const auto& r : rows) {
    const auto pt = analysis::roofline_point(m, r.test, r.median, roof, o.engine.options().kv.type);
    fmt::print("| {:>14} | {:>10.2f} | {:>10.2f} | {:>10.2f} | {:>9.2f} | {:>12} | {:>14.2f} | {:>6.1f}% |\n",
               r.test.name(), r.median, r.min, r.max, r.stddev,
               pt.bandwidth_bound ? "bandwidth" : "FMA peak", pt.bound_tokens_per_s,
               100.0 * pt.fraction);
  }
}

double mib(double bytes) { return bytes / double(1 << 20); }

void run_ablation(const Opts& o) {
  if (o.prompt.size() != 1 || o.gen.size() != 1 || o.depth != std::vector<int64_t>{0})
    bad_input("--ablation: give one -p and one -n (no -d)");
  analysis::AblationOptions ao;
  if (o.prompt_set) ao.n_prompt = o.prompt[0];
  if (o.gen_set) ao.n_gen = o.gen[0];
  ao.repeats = o.repeats;
  ao.seed = o.seed;
  ao.kv = o.engine.options().kv;
  ao.progress = [](int i, int n, const std::string& name) {
    fmt::print(stderr, "\rablation: run {}/{} ({}){:<20}", i + 1, n, name, "");
    std::fflush(stderr);
  };
  const auto model = load_model(o.model);
  kernels::ThreadPool pool(o.threads);
  const auto rows = analysis::run_ablation(*model, pool, ao);
  fmt::print(stderr, "\n");
  if (o.json) {
    auto j = nlohmann::ordered_json::array();
    for (const auto& r : rows)
      j.push_back({{"config", r.config.name},
                   {"model", o.model},
                   {"model_type", weight_type(*model)},
                   {"threads", o.threads},
                   {"n_prompt", ao.n_prompt},
                   {"n_gen", ao.n_gen},
                   {"repeats", ao.repeats},
                   {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                   {"decode_tokens_per_s", r.decode_tokens_per_s},
                   {"ttft_s", r.ttft_s},
                   {"peak_bytes", r.peak_bytes},
                   {"activation_bytes", r.activation_bytes},
                   {"prefill_speedup_over_all_off", r.prefill_speedup},
                   {"decode_speedup_over_all_off", r.decode_speedup},
                   {"samples_prefill_s", r.prefill_s},
                   {"samples_decode_s", r.decode_s}});
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("model {} ({}), {} thread(s); prompt {} tokens, then {} generated; medians of {} "
             "repeat(s), interleaved\n\n",
             o.model, weight_type(*model), o.threads, ao.n_prompt, ao.n_gen, ao.repeats);
  fmt::print("| {:<17} | {:>11} | {:>10} | {:>9} | {:>9} | {:>8} | {:>9} | {:>9} |\n",
             "configuration", "prefill t/s", "decode t/s", "TTFT ms", "peak MiB", "act MiB",
             "pp speedup", "tg speedup");
  fmt::print("|{:-<19}|{:->13}|{:->12}|{:->11}|{:->11}|{:->10}|{:->11}|{:->11}|\n", "", "", "",
             "", "", "", "", "");
  for (const auto& r : rows)
    fmt::print("| {:<17} | {:>11.1f} | {:>10.2f} | {:>9.1f} | {:>9.1f} | {:>8.2f} | {:>9.2f}x | {:>9.2f}x |\n",
               r.config.name, r.prefill_tokens_per_s, r.decode_tokens_per_s, 1e3 * r.ttft_s,
               mib(r.peak_bytes), mib(r.activation_bytes), r.prefill_speedup, r.decode_speedup);
  fmt::print("\npeak = weights + KV cache + activation buffers + attention scores (accounted); "
             "speedup = over all off\n");
}

void run(const Opts& o) {
  if (o.ablation) {
    if (o.model.empty()) bad_input("bench --ablation: give -m/--model");
    run_ablation(o);
    return;
  }
  if (o.roofline) {
    const auto path = roofline_path(o);
    const auto r = measure(o, path);
    if (o.model.empty()) {
      if (o.json)
        fmt::print("{}\n", analysis::roofline_to_json(r).dump(2));
      else
        print_roofline(r, path, true);
      return;
    }
  }
  if (o.model.empty()) bad_input("bench: give -m/--model (or --roofline to measure the machine)");
  const auto tests = tests_of(o);
  if (tests.empty()) bad_input("-p/-n: every test length is 0; nothing to run");
  const Roofline roof = roofline_for(o);
  SessionOptions so;
  so.engine = o.engine.options();
  so.threads = o.threads;
  mark_baseline_rss();  // before the weights are laid out
  Session session(load_model(o.model), so);
  const Model* model = &session.model();
  std::vector<BenchResult> rows;
  for (const auto& t : tests)
    rows.push_back(analysis::run_bench(session.engine(), t, o.repeats, o.seed));
  if (o.json) {
    auto j = nlohmann::ordered_json::array();
    for (const auto& r : rows) j.push_back(row_json(o, *model, r, roof));
    fmt::print("{}\n", j.dump(2));
  } else {
    print_table(o, *model, rows, roof);
    std::fflush(stdout);  // the table, then the memory line on stderr
    // One test's cache at a time: the largest is what the process held at most.
    RankReport mem = session.memory_report(0);
    for (const BenchResult& r : rows) mem.kv_bytes = std::max(mem.kv_bytes, r.kv_bytes);
    print_memory_line(0, mem);
  }
}

}  // namespace

void add_bench(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand(
      "bench", "Prefill/generation throughput (llama-bench style) against this machine's roofline");
  sub->add_option("-m,--model", o->model, "GGUF model file")->check(CLI::ExistingFile);
  sub->add_option("-p,--n-prompt", o->prompt, "Prefill lengths, comma-separated; 0 skips (default 512)")
      ->delimiter(',')
      ->check(int_in(0, int64_t{1} << 24));
  sub->add_option("-n,--n-gen", o->gen, "Generation lengths, comma-separated; 0 skips (default 128)")
      ->delimiter(',')
      ->check(int_in(0, int64_t{1} << 24));
  sub->add_option("-d,--n-depth", o->depth, "Cache depths pre-filled before each test (default 0)")
      ->delimiter(',')
      ->check(int_in(0, int64_t{1} << 24));
  add_threads_option(sub, o->threads);
  sub->add_option("-r,--repetitions", o->repeats, "Timed repeats after one warm-up (default 5)")
      ->check(int_in(1, 1000));
  sub->add_option("--seed", o->seed, "Seed of the random token ids (default 1234)");
  sub->add_flag("--json", o->json, "Print an array of result objects as JSON");
  sub->add_flag("--roofline", o->roofline,
                "Measure read bandwidth and FMA peak with -t threads and save them");
  sub->add_option("--roofline-file", o->roofline_file,
                  "Roofline cache (default $TANDEM_ROOFLINE_FILE, else "
                  "$XDG_CACHE_HOME/tandem/roofline.json or ~/.cache/tandem/roofline.json)");
  sub->add_option("--roofline-mib", o->roofline_mib,
                  "Buffer read by the bandwidth measurement, MiB: 1 to 65536 and at most half "
                  "the memory (default 1024; keep it well above L3)")
      ->check(int_in(1, int64_t{1} << 16));
  sub->add_flag("--ablation", o->ablation,
                "Prefill + decode under every configuration (all on, each optimization off, all "
                "off) in one table; -p/-n default to 128/16 here");
  add_engine_options(sub, o->engine);
  sub->callback([o, sub] {
    o->prompt_set = sub->count("-p") > 0;
    o->gen_set = sub->count("-n") > 0;
    run(*o);
  });
}

}  // namespace tandem::cli
