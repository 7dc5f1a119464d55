// tandem serve: an OpenAI-compatible HTTP server with continuous batching on the paged KV
// cache and prefix caching across requests (src/serve).
#include <fmt/format.h>
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "commands.hpp"
#include "common.hpp"
#include "session_cli.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/size.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/model.hpp"
#include "tandem/model/tokenizer.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/session.hpp"
#include "tandem/runtime/weight_layout.hpp"
#include "tandem/serve/scheduler.hpp"
#include "tandem/serve/server.hpp"
#include "tandem/serve/sp_lane.hpp"

namespace tandem::cli {
namespace {


struct Opts {
  std::string model, kv_pool, name;
  serve::ServerOptions server;
  serve::SchedulerOptions sched;
  int threads = 1;
  double shutdown_s = 10;
  bool no_prefix_cache = false;
  EngineFlags engine;
  SpOptions sp;             // --sp, --ranks, --sp-chunk
  int64_t sp_min_tokens = 0;  // 0: --ctx-size
};

// Tokens a pool of `text` bytes holds (f32 or q8_0 rows, every layer, K and V).
int64_t pool_tokens(const std::string& text, const Model& m, DType kv) {
  const auto bytes = parse_size(text);
  if (!bytes || *bytes == 0) bad_input("--kv-pool '{}': expected a size such as 512M or 2G", text);
  const HParams& h = m.hparams();
  const double row = kv == DType::Q8_0 ? double(h.kv_dim()) / 32 * 34 : double(h.kv_dim()) * 4;
  const int64_t tokens = int64_t(double(*bytes) / (row * 2 * double(h.n_layer)));
  if (tokens < 1) bad_input("--kv-pool {} holds no token of this model ({} per token)", text,
                            format_size(row * 2 * double(h.n_layer)));
  return tokens;
}

// Rank 0: HTTP, the batching scheduler and (on several ranks) the sequence-parallel lane
// of `session`; returns after SIGTERM/SIGINT once everything has stopped.
void serve_rank0(Opts& o, const std::shared_ptr<Model>& model, Session* session,
                 const sigset_t& stop_signals) {
  const Tokenizer* tok = model->tokenizer();
  const HParams& h = model->hparams();
  EngineOptions eo = o.engine.options(true);
  std::vector<int32_t> eos;
  for (int32_t id = 0; id < tok->n_vocab(); ++id)
    if (tok->is_eog(id)) eos.push_back(id);

  kernels::ThreadPool pool(o.threads);
  Engine engine(*model, pool);
  engine.set_options(eo);
  serve::Scheduler sched(engine, o.sched, eos);
  std::unique_ptr<serve::SpLane> lane;
  if (session) {
    serve::SpLaneOptions lo;
    lo.min_tokens = o.sp_min_tokens > 0 ? o.sp_min_tokens : o.sched.ctx_size;
    lo.rank_kv_tokens = o.sched.kv_pool_tokens;
    lo.queue_limit = o.sched.queue_limit;
    lane = std::make_unique<serve::SpLane>(*session, lo, eos);
  }
  o.server.ctx_size = o.sched.ctx_size;
  o.server.model_name = o.name.empty() ? std::filesystem::path(o.model).stem().string() : o.name;
  if (const auto t = model->file().find_string("tokenizer.chat_template")) o.server.file_chat_template = *t;
  serve::Server server(*tok, sched, o.server, lane.get());
  sched.start();
  if (lane) lane->start();
  server.start();
  const double kv_bytes = double(o.sched.kv_pool_tokens) * double(h.kv_dim()) * 2 * double(h.n_layer) *
                          (eo.kv.type == DType::Q8_0 ? 34.0 / 32 : 4.0);
  std::fprintf(stderr,
               "tandem serve: listening on http://%s:%d (model %s; %d threads; parallel %d; context %lld; "
               "KV pool %lld tokens, %s; prefix cache %s)\n",
               o.server.host.c_str(), server.port(), o.server.model_name.c_str(), o.threads, o.sched.parallel,
               (long long)o.sched.ctx_size, (long long)o.sched.kv_pool_tokens, format_size(kv_bytes).c_str(),
               o.sched.prefix_cache ? "on" : "off");
  if (lane)
    std::fprintf(stderr,
                 "tandem serve: prompts of %lld tokens or more are prefilled by %d ranks (--sp %s) and decoded "
                 "against the KV cache sharded across them; up to %lld prompt tokens (%lld KV tokens per rank)\n",
                 (long long)lane->options().min_tokens, lane->ranks(), session->scheme().name.c_str(),
                 (long long)lane->max_prompt_tokens(), (long long)o.sched.kv_pool_tokens);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::fprintf(stderr, "tandem serve: %s: finishing requests in flight (at most %.0f s), then exiting\n",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", o.shutdown_s);
  // Both lanes get the same deadline.
  std::thread sp_stop([&] {
    if (lane) lane->shutdown(o.shutdown_s);
  });
  sched.shutdown(o.shutdown_s);
  sp_stop.join();
  server.stop();
  const serve::SchedulerStats st = sched.stats();
  int64_t finished = st.finished, cancelled = st.cancelled, failed = st.failed;
  if (lane) {
    const serve::SpLaneStats ls = lane->stats();
    finished += ls.finished, cancelled += ls.cancelled, failed += ls.failed;
  }
  std::fprintf(stderr, "tandem serve: stopped (%lld requests finished, %lld cancelled, %lld failed)\n",
               (long long)finished, (long long)cancelled, (long long)failed);
}

void run(Opts& o) {
  // SIGTERM and SIGINT are blocked before any thread starts (every thread inherits the
  // mask) and taken by rank 0's main thread with sigwait once everything runs: a signal
  // stays pending until then, whichever moment it comes. The other ranks stop when
  // rank 0 tells them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that leaves mid-write is an error return, not a kill
  const std::shared_ptr<Model> model = Model::load(o.model);
  if (!model->tokenizer()) bad_input("{}: the model has no tokenizer; tandem serve needs one", o.model);
  const HParams& h = model->hparams();
  if (o.sched.ctx_size <= 0) o.sched.ctx_size = std::min<int64_t>(4096, h.n_ctx_train);
  // Pages of 16 tokens unless --kv-page says: the prefix cache reuses whole pages, so a
  // shared 1000-token system prompt reuses 992 tokens (256-token pages: 768; the second
  // request's time to first token 26 ms against 143 ms on small Q8_0, 2 threads).
  if (o.engine.kv_page < 0) o.engine.kv_page = 16;
  const EngineOptions eo = o.engine.options(true);
  if (eo.kv.page_tokens <= 0) bad_input("--kv-page must be > 0 for tandem serve (its KV cache is paged)");
  o.sched.page_tokens = eo.kv.page_tokens;
  o.sched.kv_pool_tokens = o.kv_pool.empty() ? int64_t(o.sched.parallel) * o.sched.ctx_size
                                             : pool_tokens(o.kv_pool, *model, eo.kv.type);
  o.sched.prefix_cache = !o.no_prefix_cache;
  lay_out_weights(*model);
  const bool several = launched_by_mpirun() || o.sp.ranks > 1;
  if (!several) {
    if (!o.sp.sp.empty() && o.sp.sp != "local")
      bad_input("--sp {}: a sequence-parallel scheme needs several ranks (mpirun -np P, or --ranks P)", o.sp.sp);
    if (o.sp_min_tokens > 0) bad_input("--sp-min-tokens: prompts go across ranks only under mpirun or --ranks P");
    serve_rank0(o, model, nullptr, stop_signals);
    return;
  }
  run_world(o.sp, [&](comm::Communicator& comm) {
    if (comm.size() == 1) {
      serve_rank0(o, model, nullptr, stop_signals);
      return;
    }
    SessionOptions so;
    so.scheme = o.sp.sp;
    so.sp_chunk = o.sp.sp_chunk;
    so.engine = eo;
    so.engine.kv.page_tokens = 0;  // the sequence's shard: one contiguous cache per rank
    so.threads = o.threads;
    // A rank waits for rank 0's next long prompt as long as the server runs: the
    // heartbeats (SpLaneOptions::heartbeat_s) keep it within the timeout.
    Session session(model, so, comm);
    if (comm.rank() == 0)
      serve_rank0(o, model, &session, stop_signals);
    else
      serve::sp_follow(session);
  });
}

}  // namespace

void add_serve(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  CLI::App* c = app.add_subcommand(
      "serve", "An OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /v1/models, /health, "
               "/metrics, a chat page at /) with continuous batching and prefix caching");
  c->add_option("-m,--model", o->model, "GGUF model file")->required();
  c->add_option("--host", o->server.host, "Address to listen on")->capture_default_str();
  c->add_option("--port", o->server.port, "Port (0: any free one)")->check(int_in(0, 65535))->capture_default_str();
  add_threads_option(c, o->threads);
  c->add_option("--parallel", o->sched.parallel, "Sequences decoded together, at most")
      ->check(int_in(1, 4096))
      ->capture_default_str();
  c->add_option("--ctx-size,-c", o->sched.ctx_size,
                "Tokens of one sequence, prompt and output (default: the model's, at most 4096)")
      ->check(int_in(2, int64_t{1} << 24));
  c->add_option("--kv-pool", o->kv_pool, "KV cache pool shared by all sequences, e.g. 512M (default: parallel x ctx-size tokens)");
  c->add_option("--step-tokens", o->sched.step_tokens, "Tokens one batched step runs, at most (decode + prompt chunks)")
      ->check(int_in(1, int64_t{1} << 20))
      ->capture_default_str();
  c->add_option("--queue", o->sched.queue_limit, "Requests waiting, at most (past it: 503)")
      ->check(int_in(1, 1 << 20))
      ->capture_default_str();
  c->add_flag("--no-prefix-cache", o->no_prefix_cache, "Do not keep KV pages of finished requests for reuse");
  c->add_option("--api-key", o->server.api_key, "Require Authorization: Bearer KEY on /v1/*");
  c->add_option("--chat-template", o->server.chat_template,
                "Chat template family instead of the one detected from the file: chatml, llama2, llama3, mistral, "
                "mistral-v7, phi3, gemma");
  c->add_option("--name", o->name, "Model name in responses and /v1/models (default: the file name)");
  c->add_option("--http-threads", o->server.threads,
                "Connections served at once; a streamed request holds one (default: parallel + 16)")
      ->check(int_in(1, 4096));
  c->add_option("--shutdown-timeout", o->shutdown_s, "Seconds SIGTERM waits for requests in flight")
      ->capture_default_str();
  add_engine_options(c, o->engine);
  c->add_option("--sp", o->sp.sp,
                "Under mpirun -np P (or --ranks P): the sequence-parallel scheme for long prompts (default ring):\n" +
                    parallel::scheme_help());
  c->add_option("--ranks", o->sp.ranks, "Ranks as threads of this process when not under mpirun (default 1)")
      ->check(int_in(1, 256));
  c->add_option("--sp-chunk", o->sp.sp_chunk, "Tokens per rank per prefill step of a long prompt (as prefill --sp-chunk)")
      ->check(int_in(0, 1 << 30));
  c->add_option("--sp-min-tokens", o->sp_min_tokens,
                "Under several ranks: prompts of at least this many tokens are prefilled by all ranks and decoded "
                "against the KV cache sharded across them; shorter ones are batched on rank 0 (default: --ctx-size, "
                "i.e. the prompts one batched sequence cannot hold); each rank holds up to --kv-pool of such a "
                "sequence")
      ->check(int_in(1, int64_t{1} << 30));
  c->callback([o] { run(*o); });
}

}  // namespace tandem::cli
