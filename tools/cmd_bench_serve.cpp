// tandem bench-serve: load against an OpenAI-compatible server (tandem serve,
// llama-server, vLLM): throughput, time to first token and inter-token latency.
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "tandem/analysis/loadgen.hpp"
#include "tandem/core/error.hpp"

namespace tandem::cli {

void add_bench_serve(CLI::App& app) {
  auto o = std::make_shared<loadgen::LoadOptions>();
  auto json = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand(
      "bench-serve",
      "Load an OpenAI-compatible server: C requests in flight, R in all, prompts of P token ids "
      "(streamed /v1/completions, greedy, ignore_eos), and report throughput, time to first token "
      "and inter-token latency");
  c->add_option("--url", o->url, "Server base URL, http://HOST:PORT[/PREFIX]")->capture_default_str();
  c->add_option("--concurrency,-c", o->concurrency, "Requests in flight at once")->capture_default_str();
  c->add_option("--requests,-r", o->requests, "Requests in all")->capture_default_str();
  c->add_option("--prompt-tokens,-p", o->prompt_tokens, "Prompt length in tokens")->capture_default_str();
  c->add_option("--max-tokens,-n", o->max_tokens, "Output tokens per request")->capture_default_str();
  c->add_option("--shared-prefix", o->shared_prefix,
                "Leading prompt tokens equal in every request (a shared system prompt)")
      ->capture_default_str();
  c->add_option("--model", o->model, "The request's model field (default: omitted)");
  c->add_option("--api-key", o->api_key, "Sent as Authorization: Bearer KEY");
  c->add_option("--seed", o->seed, "Seed of the prompts' token ids")->capture_default_str();
  c->add_option("--token-range", o->token_hi, "Prompt token ids are drawn from [100, N)")->capture_default_str();
  c->add_option("--timeout", o->timeout_s, "Seconds a request may take")->capture_default_str();
  c->add_flag("--json", *json, "Print the summary as one JSON object");
  c->callback([o, json] {
    const bool tty = ::isatty(2) != 0;
    o->progress = [tty](int done, int total) {
      if (tty || done == total || done % 16 == 0)
        std::fprintf(stderr, "%sbench-serve: %d/%d requests done%s", tty ? "\r" : "", done, total,
                     tty && done < total ? "" : "\n");
    };
    std::vector<loadgen::RequestResult> results;
    const double wall = loadgen::run_load(*o, results);
    const loadgen::Summary s = loadgen::summarize(results, *o, wall);
    if (*json)
      std::printf("%s\n", loadgen::to_json(s).dump(2).c_str());
    else
      std::printf("%s", loadgen::format_summary(s).c_str());
    if (s.ok == 0) throw Error(ErrorKind::Comm, "bench-serve: no request succeeded (" + s.errors.front() + ")");
  });
}

}  // namespace tandem::cli
