#include "tandem/train/trainer.hpp"

#include <algorithm>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tandem/comm/communicator.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/process_memory.hpp"
#include "tandem/core/size.hpp"
#include "tandem/core/text_file.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/tokenizer.hpp"
#include "tandem/parallel/sharding.hpp"
#include "tandem/train/bf16_params.hpp"
#include "tandem/train/checkpoint.hpp"
#include "tandem/train/data.hpp"
#include "tandem/train/grad_reduce.hpp"
#include "tandem/train/sp_attention.hpp"

namespace tandem::train {
namespace {

namespace fs = std::filesystem;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The settings a checkpoint stores, and that a resume takes back.
nlohmann::json settings_of(const TrainConfig& c) {
  return {{"model", c.model_path},  {"preset", c.preset},     {"vocab", c.vocab_path},
          {"seed", c.seed},         {"data", c.data_path},    {"task", c.task},
          {"ctx", c.ctx},           {"batch", c.batch},       {"steps", c.steps},
          {"lr", c.lr},             {"warmup", c.warmup},     {"min_lr_ratio", c.min_lr_ratio},
          {"grad_clip", c.grad_clip}, {"weight_decay", c.weight_decay}, {"beta2", c.beta2},
          {"dp", c.dp},             {"bf16", c.bf16}};
}

void apply_settings(TrainConfig& c, const nlohmann::json& s) {
  c.model_path = s.value("model", c.model_path);
  c.preset = s.value("preset", c.preset);
  c.vocab_path = s.value("vocab", c.vocab_path);
  c.seed = s.value("seed", c.seed);
  c.data_path = s.value("data", c.data_path);
  c.task = s.value("task", c.task);
  c.ctx = s.value("ctx", c.ctx);
  c.batch = s.value("batch", c.batch);
  c.lr = s.value("lr", c.lr);
  c.warmup = s.value("warmup", c.warmup);
  c.min_lr_ratio = s.value("min_lr_ratio", c.min_lr_ratio);
  c.grad_clip = s.value("grad_clip", c.grad_clip);
  c.weight_decay = s.value("weight_decay", c.weight_decay);
  c.beta2 = s.value("beta2", c.beta2);
  c.dp = s.value("dp", c.dp);
  c.bf16 = s.value("bf16", c.bf16);
  // The schedule's length is the original run's unless --steps is given again: a resumed
  // run continues the same curve.
  if (c.steps == 0) c.steps = s.value("steps", int64_t{0});
}

// Per rank: the attention's buffers (K/V blocks in flight, head-side tensors; from probe
// steps), the kernels' per-thread buffers at a shard of n tokens (the backward attention's
// transposed K/V, every scheme's calls holding about a shard's keys x G heads; the widest
// matrix product's repacked activations), and with several ranks copies of the pieces of
// the gradient in flight, which MPI's all-reduce may hold (grad_reduce.hpp).
uint64_t workspace_bytes(const SynthSpec& spec, const parallel::WorkspaceModel& attn, int64_t n,
                         int threads, bool allreduce, bool overlap, bool bf16) {
  const parallel::AttnShape shape = attn_shape(spec);
  uint64_t b = attn.bytes(n);
  b += kernels::attention_backward_scratch_bytes(n, n, shape.G, shape.d, threads);
  size_t mm = 0;
  for (const SynthTensor& t : synthetic_tensors(spec)) {
    if (!t.matrix || t.name == "token_embd.weight" || t.name == "output.weight") continue;
    MatrixView w;
    w.type = DType::F32;
    w.rows = t.rows;
    w.cols = t.cols;
    w.row_stride = size_t(t.cols) * sizeof(float);
    // --bf16: the layers' products are the BF16 kernels' instead (their buffers).
    mm = std::max(mm, bf16 ? kernels::bf16_scratch_bytes(t.rows, t.cols, n, threads)
                           : kernels::matmul_scratch_bytes(w, n, threads));
  }
  b += mm;
  if (allreduce) b += GradReducer::inflight_bytes(ParamSet::floats_of(spec), overlap);
  return b;
}

int64_t matrix_params(const SynthSpec& spec) {
  int64_t n = 0;
  for (const SynthTensor& t : synthetic_tensors(spec))
    if (t.matrix && t.name != "token_embd.weight") n += t.rows * t.cols;
  return n;
}

// Keeps the lines of log.jsonl up to `step` (a resumed run rewrites what came after).
void truncate_log(const std::string& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      const auto j = nlohmann::json::parse(line);
      if (j.value("step", int64_t{0}) <= step) kept += line + "\n";
    } catch (const nlohmann::json::exception&) {
      break;  // a line cut by a kill: the rest is not ours to keep
    }
  }
  std::ofstream(path, std::ios::trunc) << kept;
}

}  // namespace

nlohmann::json StepLog::to_json() const {
  nlohmann::json j = {{"step", step},       {"loss", loss},         {"tokens_per_s", tokens_per_s},
                      {"lr", lr},           {"grad_norm", grad_norm}, {"seconds", seconds},
                      {"peak_rss", peak_rss}, {"attention_bytes", attention_bytes},
                      {"allreduce_bytes", allreduce_bytes}, {"comm_wait_seconds", comm_wait_seconds},
                      {"attention_wait_seconds", attention_wait_seconds},
                      {"allreduce_seconds", allreduce_seconds},
                      {"activation_bytes", activation_bytes}, {"needed_bytes", needed_bytes}};
  if (flop_utilization > 0.0) j["flop_utilization"] = flop_utilization;
  if (bf16) j["bf16"] = true;
  return j;
}

double train_step_flops(const SynthSpec& spec, int64_t n, int64_t sequences) {
  const double d = double(spec.head_dim > 0 ? spec.head_dim : spec.n_embd / spec.n_head);
  const double attn = 6.0 * double(n) * double(n) * double(spec.n_head) * d * double(spec.n_layer);
  return double(sequences) * (6.0 * double(matrix_params(spec)) * double(n) + attn);
}

SynthSpec config_spec(const TrainConfig& c) {
  if (!c.model_path.empty()) return spec_of_model(c.model_path);
  SynthSpec s = preset_spec(c.preset, c.vocab_path.empty() ? kPasskeyVocab : 0, c.vocab_path);
  s.seed = c.seed;
  s.n_ctx = std::max<int64_t>(s.n_ctx, c.ctx);
  return s;
}

void check_config(const TrainConfig& c, int world_size) {
  if (c.data_path.empty() == c.task.empty())
    bad_input("tandem train: give exactly one of --data FILE and --task passkey");
  if (!c.task.empty() && c.task != "passkey")
    bad_input("--task {}: unknown task (passkey)", c.task);
  if (c.ctx < 2 || c.ctx > (int64_t{1} << 24)) bad_input("--ctx {}: out of range [2, 2^24]", c.ctx);
  if (c.batch < 1 || c.batch > 65536) bad_input("--batch {}: out of range [1, 65536]", c.batch);
  if (c.steps < 1) bad_input("--steps {}: must be >= 1", c.steps);
  if (c.stop_after < 0) bad_input("--stop-after {}: must be >= 0", c.stop_after);
  if (!(c.lr > 0.0f) || !std::isfinite(c.lr)) bad_input("--lr {}: must be > 0", c.lr);
  if (c.warmup < 0) bad_input("--warmup {}: must be >= 0", c.warmup);
  if (c.grad_clip < 0.0f) bad_input("--grad-clip {}: must be >= 0 (0: none)", c.grad_clip);
  if (c.threads < 1) bad_input("-t {}: must be >= 1", c.threads);
  if (c.dp < 1 || world_size % c.dp != 0)
    bad_input("--dp {}: must divide the {} ranks (P = dp x sp)", c.dp, world_size);
  if (!c.data_path.empty() && c.model_path.empty() && c.vocab_path.empty())
    bad_input("--data {}: a preset model needs --vocab FILE to tokenize text", c.data_path);
  check_sp_scheme(c.sp, world_size / c.dp);
}

TrainSummary run_training(const TrainConfig& given, comm::Communicator& world) {
  TrainConfig c = given;
  std::optional<CheckpointState> resume;
  if (!c.resume_dir.empty()) {
    resume = read_checkpoint_state(c.resume_dir);
    apply_settings(c, resume->settings);
    if (c.out_dir.empty()) c.out_dir = c.resume_dir;
  }
  if (c.steps == 0) c.steps = kDefaultSteps;
  check_config(c, world.size());
  const bool lead = world.rank() == 0;
  const int sp = world.size() / c.dp;
  const int dp_rank = world.rank() / sp;
  auto group = world.split(dp_rank, world.rank());

  const SynthSpec spec = config_spec(c);
  if (!c.task.empty() && spec.n_vocab < kPasskeyVocab)
    bad_input("--task passkey: the model's vocabulary ({} tokens) is smaller than the task's {}",
              spec.n_vocab, kPasskeyVocab);
  kernels::ThreadPool pool(c.threads);
  const SpAttention spa = make_sp_attention(c.sp, attn_shape(spec), pool, *group);
  auto max_shard_of = [&](int64_t ctx) {
    int64_t m = 0;
    for (const int64_t s : parallel::shard_sizes(ctx, sp, spa.placement)) m = std::max(m, s);
    return m;
  };
  const int64_t max_shard = max_shard_of(c.ctx);

  // The memory per rank at a context: what --max-memory is checked against.
  // What the process holds before any of it: code, libraries, MPI, thread stacks (read
  // before the probe, whose own inputs are transient).
  const double rss0 = double(process_memory().rss);
  // Probes at shards of 64 .. 2048 tokens, past the ring's chunk (512 rows), where its
  // buffers stop growing.
  parallel::WorkspaceModel attn_ws =
      parallel::probe_workspace(*spa.attention, sp, group->rank(), spa.placement);
#ifdef __GLIBC__
  malloc_trim(0);  // the probe's inputs, freed, would otherwise stay resident in the heap
#endif
  // What the probe left resident beyond the strategy's own buffers (kernel scratch of the
  // threads, the allocator's) stays: it belongs to the baseline.
  const double left = double(process_memory().rss) - double(spa.attention->held_bytes());
  // The most of any rank, so that every rank checks (and reports) the same figure.
  std::vector<double> most = {std::max(rss0, left)};
  for (const auto& p : attn_ws.points) most.push_back(p.second);
  world.allreduce(most.data(), most.size(), comm::ReduceOp::Max);
  const uint64_t baseline = uint64_t(most[0]);
  for (size_t i = 0; i < attn_ws.points.size(); ++i) attn_ws.points[i].second = most[i + 1];
  auto plan = [&](int64_t ctx) {
    TrainSummary s;
    const int64_t n = max_shard_of(ctx);
    s.activation_bytes = activation_bytes(spec, n, c.checkpoint_layers);
    // Weights, gradients and the two AdamW moments, f32 each.
    s.param_bytes = uint64_t(ParamSet::floats_of(spec)) * 4 * sizeof(float);
    if (c.bf16) s.param_bytes += Bf16Params::bytes_of(spec);  // the layers' BF16 copies
    s.workspace_bytes =
        workspace_bytes(spec, attn_ws, n, c.threads, world.size() > 1, c.overlap_reduce, c.bf16);
    s.baseline_bytes = baseline;
    return s;
  };
  TrainSummary sum = plan(c.ctx);
  const uint64_t needed = sum.needed_bytes();
  if (c.max_memory > 0) {
    int64_t lo = 1, hi = int64_t{1} << 24;  // the longest ctx within the budget: lo fits
    if (plan(2).needed_bytes() > c.max_memory) lo = 0;
    while (lo > 0 && lo < hi) {
      const int64_t mid = lo + (hi - lo + 1) / 2;
      if (plan(mid).needed_bytes() <= c.max_memory) lo = mid;
      else hi = mid - 1;
    }
    sum.longest_ctx = lo;
  }
  const std::string breakdown = fmt::format(
      "{} per rank ({} of activations{}, {} of weights, gradients and AdamW moments{}, {} of "
      "attention, kernel and communication buffers, {} for the process itself)",
      format_size(double(needed)), format_size(double(sum.activation_bytes)),
      c.checkpoint_layers ? ", layers checkpointed" : "", format_size(double(sum.param_bytes)),
      c.bf16 ? " (with the layers' BF16 copies)" : "",
      format_size(double(sum.workspace_bytes)), format_size(double(sum.baseline_bytes)));
  const std::string longest =
      sum.longest_ctx > 1 ? fmt::format("the longest --ctx that fits is {}", sum.longest_ctx)
                          : std::string("no --ctx fits");
  if (c.max_memory > 0 && needed > c.max_memory)
    fail(ErrorKind::Resource, "--max-memory {}: training at --ctx {} on {} sp rank(s) needs {}; {}{}",
         format_size(double(c.max_memory)), c.ctx, sp, breakdown, longest,
         c.checkpoint_layers ? "" : " (--checkpoint-layers needs less)");
  if (c.dry_run) {
    if (lead)
      fmt::print("--ctx {} on {} sp rank(s) needs {}{}\n", c.ctx, sp, breakdown,
                 c.max_memory > 0 ? fmt::format("; within --max-memory {} {}",
                                                format_size(double(c.max_memory)), longest)
                                  : "");
    return sum;
  }

  ParamSet params(spec), grads(spec);
  Optimizer opt(spec);
  int64_t first = 1;
  if (resume) {
    load_checkpoint(c.resume_dir, params, opt);
    first = resume->step + 1;
  } else if (!c.model_path.empty()) {
    load_params(params, c.model_path);
  } else {
    init_params(params);
  }
  sum.first_step = first;

  std::unique_ptr<DataSource> data, held_out;
  std::optional<Tokenizer> tok;
  if (c.task == "passkey") {
    data = passkey_source(c.ctx, c.seed, false);
    held_out = passkey_source(c.ctx, c.seed, true);
  } else {
    const gguf::File f = gguf::File::open(c.model_path.empty() ? c.vocab_path : c.model_path);
    tok.emplace(Tokenizer::from_gguf(f));
    data = text_source(c.data_path, *tok, c.ctx, c.seed);
  }
  ModelGrad mg(params, *spa.attention, pool, max_shard, c.checkpoint_layers);
  GradReducer reducer(world, grads, c.overlap_reduce);
  // --bf16: the layers' matrices in BF16, packed from the master weights now and after every
  // optimizer step.
  std::optional<Bf16Params> bf16;
  if (c.bf16) {
    bf16.emplace(params, pool);
    mg.set_bf16(&*bf16);
    sum.products = bf16->fast() ? "bf16 (AVX-512 BF16)" : "bf16 (portable)";
    if (lead && !c.quiet && !bf16->fast())
      fmt::print(stderr, "--bf16: no AVX-512 BF16 in use (CPU or TANDEM_KERNELS_ISA); the BF16 "
                         "products run on the portable path, slower than f32\n");
  }

  const std::string log_path = !c.log_path.empty() ? c.log_path
                               : c.out_dir.empty()  ? ""
                                                    : c.out_dir + "/log.jsonl";
  if (lead && !c.out_dir.empty()) fs::create_directories(c.out_dir);
  if (lead && !log_path.empty()) {
    if (resume) truncate_log(log_path, resume->step);
    else if (!std::ofstream(log_path, std::ios::trunc))
      bad_input("--log {}: cannot write the file", log_path);
  }
  Schedule sched{c.lr, c.warmup, c.steps, c.min_lr_ratio};
  kernels::AdamW adam;
  adam.beta2 = c.beta2;
  adam.weight_decay = c.weight_decay;
  const double step_flops = train_step_flops(spec, c.ctx, c.batch * c.dp);

  auto evaluate = [&](int64_t step) {
    EvalLog e;
    e.step = step;
    double v[4] = {0, 0, 0, 0};  // loss, counted, correct tokens, correct sequences
    for (int64_t i = dp_rank; i < c.eval_examples; i += c.dp) {
      const LossSum r = mg.evaluate(shard_of(held_out->get(i), sp, group->rank(), spa.placement));
      double g[3] = {r.loss, double(r.counted), double(r.correct)};
      group->allreduce(g, 3, comm::ReduceOp::Sum);
      if (group->rank() == 0) {
        v[0] += g[0];
        v[1] += g[1];
        v[2] += g[2];
        v[3] += g[2] == g[1] ? 1.0 : 0.0;
      }
    }
    world.allreduce(v, 4, comm::ReduceOp::Sum);
    e.examples = c.eval_examples;
    e.loss = v[1] > 0 ? v[0] / v[1] : 0.0;
    e.token_accuracy = v[1] > 0 ? v[2] / v[1] : 0.0;
    e.sequence_accuracy = double(v[3]) / double(std::max<int64_t>(1, c.eval_examples));
    return e;
  };

  const auto run_t0 = std::chrono::steady_clock::now();
  const int64_t last = c.stop_after > 0 ? std::min(c.steps, c.stop_after) : c.steps;
  for (int64_t step = first; step <= last; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const comm::CommStats world0 = world.stats(), group0 = group->stats();
    std::fill(grads.data(), grads.data() + grads.size(), 0.0f);
    std::vector<SeqShard> shards;
    int64_t counted = 0;
    for (int64_t b = 0; b < c.batch; ++b) {
      const int64_t index = (step - 1) * c.batch * c.dp + dp_rank * c.batch + b;
      shards.push_back(shard_of(data->get(index), sp, group->rank(), spa.placement));
      for (int32_t t : shards.back().targets) counted += t >= 0;
    }
    world.allreduce(&counted, 1, comm::ReduceOp::Sum);
    const float grad_scale = counted > 0 ? 1.0f / float(counted) : 0.0f;
    double loss = 0.0;
    for (size_t b = 0; b < shards.size(); ++b)
      loss += mg.step(shards[b], grad_scale, grads, b + 1 == shards.size() ? &reducer : nullptr).loss;
    const auto reduce_t0 = std::chrono::steady_clock::now();
    reducer.finish();
    const double reduce_seconds = seconds_since(reduce_t0);
    world.allreduce(&loss, 1, comm::ReduceOp::Sum);
    StepLog lg;
    lg.step = step;
    lg.loss = counted > 0 ? loss / double(counted) : 0.0;
    lg.grad_norm = grad_norm(grads, pool);
    lg.lr = sched.at(step);
    opt.step(params, grads, lg.lr, clip_factor(lg.grad_norm, c.grad_clip), adam, pool);
    if (bf16) bf16->pack(pool);
    lg.seconds = seconds_since(t0);
    lg.tokens_per_s = double(c.ctx * c.batch * c.dp) / lg.seconds;
    if (c.peak_flops > 0.0) lg.flop_utilization = step_flops / lg.seconds / (c.peak_flops * world.size());
    lg.peak_rss = process_memory().peak_rss;
    lg.activation_bytes = sum.activation_bytes;
    lg.needed_bytes = needed;
    lg.bf16 = c.bf16;
    {
      const comm::CommStats w = world.stats(), g = group->stats();
      const uint64_t attn = g.bytes_sent - group0.bytes_sent;
      double most[6] = {double(attn), double(w.bytes_sent - world0.bytes_sent - attn),
                        w.wait_seconds - world0.wait_seconds, double(lg.peak_rss),
                        g.wait_seconds - group0.wait_seconds, reduce_seconds};
      world.allreduce(most, 6, comm::ReduceOp::Max);
      lg.attention_bytes = uint64_t(most[0]);
      lg.allreduce_bytes = uint64_t(most[1]);
      lg.comm_wait_seconds = most[2];
      lg.peak_rss = uint64_t(most[3]);
      lg.attention_wait_seconds = most[4];
      lg.allreduce_seconds = most[5];
    }
    sum.steps.push_back(lg);

    nlohmann::json line = lg.to_json();
    const bool eval_now = held_out && ((c.eval_every > 0 && step % c.eval_every == 0) || step == c.steps);
    if (eval_now) {
      const EvalLog e = evaluate(step);
      sum.evals.push_back(e);
      line["eval_loss"] = e.loss;
      line["accuracy"] = e.sequence_accuracy;
      line["token_accuracy"] = e.token_accuracy;
    }
    if (lead && !c.quiet) {
      std::string util = lg.flop_utilization > 0 ? fmt::format("  FLOP {:.0f}%", 100.0 * lg.flop_utilization) : "";
      std::string ev = eval_now ? fmt::format("  eval loss {:.4f} acc {:.1f}%", line["eval_loss"].get<double>(),
                                              100.0 * line["accuracy"].get<double>())
                                : "";
      fmt::print(stderr, "step {}/{}  loss {:.4f}  lr {:.2e}  |g| {:.3f}  {:.0f} tok/s{}  mem {}  {:.2f} s{}\n",
                 step, c.steps, lg.loss, lg.lr, lg.grad_norm, lg.tokens_per_s, util,
                 format_size(double(lg.peak_rss)), lg.seconds, ev);
    }
    if (lead && !log_path.empty()) {
      std::ofstream out(log_path, std::ios::app);
      out << line.dump() << "\n";
    }
    const bool save_now = !c.out_dir.empty() && ((c.save_every > 0 && step % c.save_every == 0) || step == last);
    if (save_now && lead) save_checkpoint(c.out_dir, params, opt, step, settings_of(c));
    if (save_now) world.barrier();
  }
  sum.seconds = seconds_since(run_t0);
  return sum;
}

}  // namespace tandem::train
