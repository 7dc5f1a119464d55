// tandem logits: raw float32 logits of every prompt position (or the last K).
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>

#include "commands.hpp"
#include "common.hpp"
#include "session_cli.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/process_memory.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::cli {
namespace {

struct Opts {
  std::string model, ids, out;
  int64_t random_tokens = 0;
  uint64_t seed = 1234;
  int64_t last = -1;
  SessionFlags session;
};

void run(const Opts& o) {
  const std::shared_ptr<Model> model = Model::load(o.model);
  const int64_t V = model->hparams().n_vocab;
  std::vector<int32_t> ids;
  if (!o.ids.empty()) {
    ids = parse_id_list(o.ids, "--ids");
  } else {
    ids = random_token_ids(o.random_tokens, V, o.seed);
  }
  for (int32_t id : ids)
    if (id >= V) bad_input("--ids: token id {} is out of range (vocabulary size {})", id, V);
  const int64_t n = int64_t(ids.size());
  const int64_t n_out = o.last >= 0 ? std::min(o.last, n) : n;

  // Every rank computes its shard's rows; rank 0 writes them all.
  std::vector<float> logits;
  double secs = 0, estimate = 0;
  RankReport memory;
  bool root = false;
  const Workload w{n, 0, false, n_out};
  run_sessions(model, o.session, w, [&](Session& s) {
    const Stopwatch sw;
    auto all = s.gather_logits(s.prefill(ids, n_out));
    if (s.comm().rank() == 0) {
      secs = sw.seconds();
      estimate = double(s.estimate(w).total());
      memory = s.memory_report(n);
      logits = std::move(all);
      memory.logits_bytes = double(logits.size() * sizeof(float));
      root = true;
    }
  });
  if (!root) return;  // another process (MPI rank) writes the file
  std::FILE* f = std::fopen(o.out.c_str(), "wb");
  if (!f) bad_input("--out {}: cannot create: {}", o.out, std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(f, std::fclose);
  if (std::fwrite(logits.data(), sizeof(float), logits.size(), f) != logits.size())
    fail(ErrorKind::Internal, "--out {}: write failed", o.out);

  if (n_out > 0) {
    const float* last = logits.data() + (n_out - 1) * V;
    std::vector<int32_t> idx(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    const int64_t k = std::min<int64_t>(5, V);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return last[a] > last[b] || (last[a] == last[b] && a < b); });
    std::string top;
    for (int64_t i = 0; i < k; ++i) top += fmt::format(" {}:{:.6f}", idx[size_t(i)], last[idx[size_t(i)]]);
    fmt::print("top5 of position {}:{}\n", n - 1, top);
  }
  fmt::print(stderr, "{} tokens in {:.3f} s ({:.1f} tokens/s); wrote [{}][{}] float32 to {}\n", n,
             secs, double(n) / secs, n_out, V, o.out);
  memory.measure_process();  // the peak after writing
  print_memory_line(estimate, memory);
}

}  // namespace

void add_logits(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("logits", "Write the logits of a prompt as raw float32");
  sub->add_option("-m,--model", o->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  auto* ids = sub->add_option("--ids", o->ids, "Prompt token ids, e.g. 1,2,3");
  auto* rnd = sub->add_option("--random-tokens", o->random_tokens, "Use N random token ids")
                  ->check(int_in(1, int64_t{1} << 26));
  ids->excludes(rnd);
  sub->add_option("--seed", o->seed, "Seed for --random-tokens (default 1234)");
  sub->add_option("--last", o->last, "Write only the last K positions")
      ->check(int_in(0, int64_t{1} << 26));
  sub->add_option("--out", o->out, "Output file: little-endian float32 [positions][vocab]")
      ->required();
  add_session_options(sub, o->session);
  sub->callback([o, ids, rnd] {
    if (ids->count() == 0 && rnd->count() == 0) bad_input("logits: give --ids or --random-tokens");
    run(*o);
  });
}

}  // namespace tandem::cli
