// tandem train: trains a Llama-architecture model (a preset from scratch, or a GGUF model)
// on a text file or the built-in passkey task, on one rank or sequence-parallel over
// ranks (mpirun, or --ranks P threads), with checkpoints, a JSON-lines log and a report.
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include "commands.hpp"
#include "session_cli.hpp"
#include "tandem/analysis/report.hpp"
#include "tandem/analysis/roofline.hpp"
#include "tandem/comm/communicator.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/size.hpp"
#include "tandem/train/trainer.hpp"

namespace tandem::cli {
namespace {

struct Opts {
  train::TrainConfig c;
  SpOptions sp;
  std::string report_dir;
};

// The FMA peak for t threads: the roofline cache's figure (bench --roofline), else
// measured now (FMA only matters here: a small read buffer, not saved to the cache).
double fma_peak(int threads) {
  const auto path = analysis::default_roofline_path();
  if (const auto r = analysis::find_roofline(analysis::load_rooflines(path), threads)) return r->fma_peak;
  analysis::RooflineOptions ro;
  ro.threads = threads;
  ro.buffer_bytes = size_t(64) << 20;
  ro.passes = 3;
  return analysis::measure_roofline(ro).fma_peak;
}

void write_report(const std::string& dir, const train::TrainConfig& c, const train::TrainSummary& s,
                  int ranks) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) bad_input("--report {}: cannot create the folder: {}", dir, ec.message());
  analysis::LinePlot plot;
  plot.title = fmt::format("training loss ({}, ctx {}, batch {}, {} rank(s))",
                           c.task.empty() ? c.data_path : c.task, c.ctx, c.batch, ranks);
  plot.x_label = "step";
  plot.y_label = "loss (mean over counted tokens)";
  plot.log_x = false;
  plot.log_y = true;
  analysis::Series loss{"train loss", {}, "", "", true, 0.0};
  for (const auto& st : s.steps) loss.points.push_back({double(st.step), st.loss});
  plot.series.push_back(loss);
  if (!s.evals.empty()) {
    analysis::Series ev{"held-out loss", {}, "6 4", "", true, 3.5};
    for (const auto& e : s.evals) ev.points.push_back({double(e.step), e.loss});
    plot.series.push_back(ev);
  }
  const std::string svg = analysis::line_plot_svg(plot);
  std::ofstream(dir + "/loss.svg") << svg;
  double tps = 0, util = 0;
  for (const auto& st : s.steps) {
    tps += st.tokens_per_s;
    util += st.flop_utilization;
  }
  const double n = double(std::max<size_t>(1, s.steps.size()));
  std::string rows = fmt::format(
      "<tr><td>steps</td><td>{}..{}</td></tr><tr><td>wall time</td><td>{:.1f} s</td></tr>"
      "<tr><td>mean tokens/s</td><td>{:.0f}</td></tr><tr><td>mean FLOP utilization</td><td>{:.1f}%</td></tr>"
      "<tr><td>activations per rank (plan)</td><td>{}</td></tr>"
      "<tr><td>weights, gradients, moments</td><td>{}</td></tr>"
      "<tr><td>layer products</td><td>{}</td></tr>",
      s.first_step, s.first_step + int64_t(s.steps.size()) - 1, s.seconds, tps / n, 100.0 * util / n,
      format_size(double(s.activation_bytes)), format_size(double(s.param_bytes)), s.products);
  if (!s.steps.empty())
    rows += fmt::format("<tr><td>final loss</td><td>{:.4f}</td></tr><tr><td>peak RSS (most of any rank)</td><td>{}</td></tr>",
                        s.steps.back().loss, format_size(double(s.steps.back().peak_rss)));
  if (!s.evals.empty())
    rows += fmt::format("<tr><td>held-out accuracy (last)</td><td>{:.1f}% of {} examples</td></tr>",
                        100.0 * s.evals.back().sequence_accuracy, s.evals.back().examples);
  const std::string body = "<h1>tandem train</h1>" + svg + "<table>" + rows + "</table>";
  std::ofstream(dir + "/index.html") << analysis::html_page("tandem train", body);
}

void run(Opts& o) {
  train::TrainConfig& c = o.c;
  if (c.resume_dir.empty() && c.out_dir.empty() && c.save_every > 0)
    bad_input("--save-every: needs --out DIR");
  if (!c.log_path.empty() && !std::ofstream(c.log_path, std::ios::app))
    bad_input("--log {}: cannot write the file", c.log_path);
  c.peak_flops = fma_peak(c.threads);
  std::mutex m;
  train::TrainSummary lead;
  int ranks = 1;
  run_world(o.sp, [&](comm::Communicator& world) {
    train::TrainSummary s = train::run_training(c, world);
    if (world.rank() == 0) {
      std::lock_guard<std::mutex> g(m);
      lead = std::move(s);
      ranks = world.size();
    }
  });
  if (!lead.steps.empty())
    fmt::print("trained steps {}..{} in {:.1f} s: final loss {:.4f}{} ({} products)\n",
               lead.first_step, lead.steps.back().step, lead.seconds, lead.steps.back().loss,
               lead.evals.empty() ? "" : fmt::format(", held-out accuracy {:.1f}%",
                                                     100.0 * lead.evals.back().sequence_accuracy),
               lead.products);
  if (!o.report_dir.empty()) write_report(o.report_dir, c, lead, ranks);
}

}  // namespace

void add_train(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  o->c.threads = default_threads();
  auto* sub = app.add_subcommand("train", "Train a model (a preset from scratch, or a GGUF model) on text or the passkey task");
  auto* model = sub->add_option("-m,--model", o->c.model_path, "GGUF model to continue training (plain Llama block)");
  sub->add_option("--preset", o->c.preset, "Model shape trained from scratch: tiny or small")
      ->check(CLI::IsMember({"tiny", "small"}))->excludes(model);
  sub->add_option("--vocab", o->c.vocab_path, "Vocabulary GGUF for a preset (needed with --data)");
  sub->add_option("--data", o->c.data_path, "Text file, tokenized and packed into sequences of --ctx");
  sub->add_option("--task", o->c.task, "Built-in task: passkey");
  sub->add_option("--ctx", o->c.ctx, "Tokens per sequence")->capture_default_str();
  sub->add_option("--batch", o->c.batch, "Sequences per step (per --dp group)")->capture_default_str();
  sub->add_option("--steps", o->c.steps, "Optimizer steps, the schedule's length (default 1000; on --resume the saved run's)");
  sub->add_option("--stop-after", o->c.stop_after, "Stop (and checkpoint) after this step; --resume continues")->capture_default_str();
  sub->add_option("--lr", o->c.lr, "Peak learning rate")->capture_default_str();
  sub->add_option("--warmup", o->c.warmup, "Linear warmup steps (then cosine decay)")->capture_default_str();
  sub->add_option("--min-lr-ratio", o->c.min_lr_ratio, "Floor of the cosine, as a fraction of --lr")->capture_default_str();
  sub->add_option("--grad-clip", o->c.grad_clip, "Clip the gradient's global norm to this (0: none)")->capture_default_str();
  sub->add_option("--weight-decay", o->c.weight_decay, "AdamW weight decay (matrices)")->capture_default_str();
  sub->add_flag("--checkpoint-layers", o->c.checkpoint_layers,
                "Keep only each layer's input; recompute the layer in the backward (less memory)");
  sub->add_flag("!--no-overlap-reduce", o->c.overlap_reduce,
                "Sum the gradient across ranks after the backward, not overlapped with it");
  sub->add_flag("--bf16", o->c.bf16,
                "The layers' matrix products in BF16 with f32 sums (AVX-512 BF16; elsewhere a "
                "slower portable path); weights, gradients and AdamW state stay f32");
  sub->add_option("--seed", o->c.seed, "Seed of the initial weights, data order and task draws")->capture_default_str();
  sub->add_option("-t,--threads", o->c.threads, "Threads per rank")->capture_default_str();
  sub->add_option("--out", o->c.out_dir, "Folder for checkpoint.gguf, the optimizer state and log.jsonl");
  sub->add_option("--log", o->c.log_path, "JSON-lines log of every step (default: --out DIR/log.jsonl)");
  sub->add_option("--resume", o->c.resume_dir, "Continue the run saved in this folder");
  sub->add_option("--report", o->report_dir, "Folder for the loss curve (SVG) and the run's numbers");
  sub->add_option("--sp", o->c.sp, "Sequence parallelism within a group: local (one rank), ring, zigzag, ulysses, hybrid:UxR")->capture_default_str();
  sub->add_option("--dp", o->c.dp, "Data-parallel groups (P = dp x sp ranks)")->capture_default_str();
  sub->add_option("--ranks", o->sp.ranks, "Ranks as threads of this process (without mpirun)")->capture_default_str();
  sub->add_option("--eval-every", o->c.eval_every, "Held-out evaluation every N steps (0: at the end)")->capture_default_str();
  sub->add_option("--eval-examples", o->c.eval_examples, "Held-out examples per evaluation")->capture_default_str();
  sub->add_option("--save-every", o->c.save_every, "Checkpoint every N steps (0: at the end)")->capture_default_str();
  sub->add_flag("-q,--quiet", o->c.quiet, "No progress line per step");
  sub->add_flag("--dry-run", o->c.dry_run,
                "Check the settings and the memory per rank (with --max-memory: the longest --ctx "
                "that fits), print them and stop before step 1");
  sub->add_option_function<std::string>(
      "--max-memory",
      [o](const std::string& v) {
        const auto b = parse_size(v);
        if (!b || *b == 0) throw CLI::ValidationError("--max-memory", "'" + v + "' is not a size (e.g. 512M, 4G)");
        o->c.max_memory = *b;
      },
      "Memory budget per rank; a context that does not fit is refused before step 1");
  sub->callback([o] { run(*o); });
}

}  // namespace tandem::cli
