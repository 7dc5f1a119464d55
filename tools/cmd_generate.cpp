// tandem generate: prefill a prompt, then decode with the KV cache, streaming text.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <random>

#include "commands.hpp"
#include "common.hpp"
#include "session_cli.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/process_memory.hpp"
#include <nlohmann/json.hpp>

namespace tandem::cli {
namespace {

struct Opts {
  std::string model, prompt, ids;
  int64_t n_predict = 32;
  SamplerParams sampler;
  int64_t seed = -1;
  bool no_bos = false;
  bool show_ids = false;
  bool json = false;
  SessionFlags session;
  bool no_kv_cache = false;
  int parallel = 1;
};

// --parallel N > 1: N continuations sharing the prompt's KV pages; texts printed at the end.
void print_parallel(const Opts& o, const Session& s, const std::vector<int32_t>& prompt,
                    const GenerateParams& gp, const ParallelResult& r) {
  const Tokenizer* tok = s.model().tokenizer();
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    fmt::print("[sequence {}, seed {}]\n", i, gp.sampler.seed + i);
    if (o.show_ids || !tok) {
      for (int32_t id : r.tokens[i]) fmt::print("{} ", id);
    } else {
      fmt::print("{}{}", tok->decode(prompt), tok->decode(r.tokens[i]));
    }
    fmt::print("\n");
  }
  const auto& st = r.stats;
  fmt::print(stderr,
             "\nprompt: {} tokens in {:.3f} s ({:.1f} tokens/s), prefilled once for {} sequences\n"
             "generation: {} tokens in all, {:.1f} tokens/s ({} decode steps in {:.3f} s)\n"
             "KV cache: {} pages of {} tokens in use ({} shared), {:.2f} MiB; {:.2f} MiB without "
             "prefix sharing\n"
             "time to first token: {:.3f} s; threads {}; seeds {}..{}\n",
             st.n_prompt, st.prompt_seconds, st.prompt_tokens_per_s(), o.parallel,
             st.n_generated, st.gen_tokens_per_s(), st.n_decode_steps, st.decode_seconds,
             r.kv.blocks_used, s.options().engine.kv.page_tokens, r.kv.blocks_shared,
             double(r.kv_used_bytes) / (1 << 20), double(r.kv_unshared_bytes) / (1 << 20),
             st.ttft_seconds, o.session.threads, gp.sampler.seed,
             gp.sampler.seed + uint64_t(o.parallel) - 1);
}

void run(const Opts& o) {
  const std::shared_ptr<Model> model = Model::load(o.model);
  const Tokenizer* tok = model->tokenizer();
  std::vector<int32_t> prompt;
  if (!o.ids.empty()) {
    prompt = parse_id_list(o.ids, "--ids");
  } else {
    if (!tok) bad_input("{}: the model has no tokenizer; give the prompt as --ids", o.model);
    prompt = tok->encode(o.prompt, !o.no_bos);
  }
  if (prompt.empty()) bad_input("-p: the prompt gives no tokens");

  GenerateParams gp;
  gp.n_predict = o.n_predict;
  gp.sampler = o.sampler;
  gp.kv_cache = !o.no_kv_cache;
  gp.sampler.seed = o.seed >= 0 ? uint64_t(o.seed) : std::random_device{}();
  const Workload w{int64_t(prompt.size()), o.n_predict, o.no_kv_cache};
  // Output goes to stdout on rank 0 only (every rank generates the same tokens).
  GenerateReport report;
  bool root = false;
  run_sessions(model, o.session, w, [&](Session& s) {
    // Every rank must sample with the same seed.
    uint64_t seed = gp.sampler.seed;
    s.comm().broadcast(&seed, sizeof seed, 0);
    GenerateParams rank_gp = gp;
    rank_gp.sampler.seed = seed;
    const bool is_root = s.comm().rank() == 0;
    if (o.parallel > 1) {
      const auto r = s.generate_parallel(prompt, rank_gp, o.parallel);
      print_parallel(o, s, prompt, rank_gp, r);
      return;
    }
    const bool text = is_root && !o.json;
    if (text && tok) fmt::print("{}", tok->decode(prompt));
    std::fflush(stdout);
    Utf8Stream stream;
    std::vector<int32_t> ids;
    const GenerateStats st = s.generate(prompt, rank_gp, [&](int32_t id) {
      if (!text) return;
      if (o.show_ids || !tok) {
        fmt::print("{} ", id);
      } else {
        fmt::print("{}", stream.push(tok->piece(id)));
      }
      std::fflush(stdout);
    }, &ids);
    if (!is_root) return;
    if (text) fmt::print("{}\n", stream.flush());
    report = GenerateReport{o.model, s.scheme().name, s.comm().size(), o.session.threads, seed, st,
                            std::move(ids)};
    report.estimate_bytes = double(s.estimate(w).total());
    report.memory = s.memory_report(int64_t(prompt.size()));
    report.peak_rss_bytes = report.memory.peak_rss_bytes;
    report.baseline_rss_bytes = report.memory.baseline_rss_bytes;
    root = true;
  });
  if (!root) return;  // this process is not rank 0 (or --parallel printed its own report)
  if (o.json) {
    fmt::print("{}\n", to_json(report).dump(2));
    return;
  }
  const GenerateStats& st = report.stats;
  fmt::print(stderr,
             "\nprompt: {} tokens in {:.3f} s ({:.1f} tokens/s)\n"
             "generation: {} tokens, {:.1f} tokens/s ({} decode steps in {:.3f} s)\n"
             "time to first token: {:.3f} s; threads {}; seed {}\n",
             st.n_prompt, st.prompt_seconds, st.prompt_tokens_per_s(), st.n_generated,
             st.gen_tokens_per_s(), st.n_decode_steps, st.decode_seconds, st.ttft_seconds,
             o.session.threads, report.seed);
  print_memory_line(report.estimate_bytes, report.memory);
}

}  // namespace

void add_generate(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("generate", "Generate text from a prompt (KV-cached decoding)");
  sub->add_option("-m,--model", o->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  auto* p = sub->add_option("-p,--prompt", o->prompt, "Prompt text");
  auto* ids = sub->add_option("--ids", o->ids, "Prompt as token ids (1,2,3) instead of text");
  p->excludes(ids);
  sub->add_option("-n,--n-predict", o->n_predict, "Tokens to generate (default 32)")
      ->check(int_in(0, int64_t{1} << 26));
  sub->add_option("--temp", o->sampler.temperature, "Temperature; 0 = greedy (default 0.8)")
      ->check(CLI::Range(0.0f, 100.0f));
  sub->add_option("--top-k", o->sampler.top_k, "Keep the k most likely tokens; 0 = all (default 40)")
      ->check(int_in(0, 1 << 24));
  sub->add_option("--top-p", o->sampler.top_p, "Nucleus probability mass (default 0.95)")
      ->check(CLI::Range(0.0f, 1.0f));
  sub->add_option("--seed", o->seed, "Random seed (default: random, printed at the end)")
      ->check(int_in(0, int64_t{1} << 62));
  sub->add_flag("--no-bos", o->no_bos, "Do not add BOS to the prompt");
  sub->add_flag("--show-ids", o->show_ids, "Print generated token ids instead of text");
  sub->add_flag("--json", o->json,
                "Print the result (ids, timings, seed) as JSON on stdout instead of the text");
  add_session_options(sub, o->session);
  sub->add_option("--parallel", o->parallel,
                  "Generate N continuations of the prompt (seeds seed..seed+N-1); the prompt is "
                  "prefilled once and its KV cache pages are shared (default 1)")
      ->check(int_in(1, 4096));
  sub->add_flag("--no-kv-cache", o->no_kv_cache,
                "Recompute the whole sequence for every new token (the naive baseline)");
  sub->callback([o, p, ids] {
    if (p->count() == 0 && ids->count() == 0) bad_input("generate: give -p TEXT or --ids LIST");
    run(*o);
  });
}

}  // namespace tandem::cli
