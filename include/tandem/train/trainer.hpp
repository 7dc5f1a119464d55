#pragma once
// The training loop: sequences from a DataSource, forward and backward through ModelGrad,
// gradients summed over ranks, clipping, AdamW on the schedule, a progress line and a
// JSON-lines log per step, held-out evaluation and checkpoints. Every rank of the world
// communicator calls run_training; ranks form dp groups of sp ranks (P = dp x sp), the sp
// ranks of a group splitting each sequence and the groups taking different sequences.
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "tandem/train/model_grad.hpp"

namespace tandem::comm {
class Communicator;
}

namespace tandem::train {

inline constexpr int64_t kDefaultSteps = 1000;

struct TrainConfig {
  // The model: a GGUF file to continue from, or a preset trained from scratch.
  std::string model_path;
  std::string preset = "tiny";
  std::string vocab_path;  // tokenizer of a preset model (needed with data_path)
  uint64_t seed = 1;       // weights of a preset, the data order and the passkey draws
  // The data: a text file, or the built-in task "passkey".
  std::string data_path;
  std::string task;
  int64_t ctx = 512;
  int64_t batch = 8;  // sequences per step (per dp group)
  int64_t steps = 0;        // the schedule's length (0: kDefaultSteps, or on a resume the
                            // saved run's)
  int64_t stop_after = 0;   // > 0: stop (and checkpoint) after this step; --resume goes on
  float lr = 1e-3f;
  int64_t warmup = 100;
  float min_lr_ratio = 0.1f;
  float grad_clip = 1.0f;
  float weight_decay = 0.1f;
  float beta2 = 0.95f;
  bool checkpoint_layers = false;
  bool overlap_reduce = true;  // the gradient all-reduce overlaps the backward (grad_reduce.hpp)
  bool bf16 = false;         // the layers' matrix products in BF16 (master weights, gradients
                             // and AdamW moments stay f32; the output head stays f32)
  int threads = 1;
  std::string sp = "local";  // attention across the sp ranks of a group
  int dp = 1;
  uint64_t max_memory = 0;   // per-rank budget in bytes; 0: none
  std::string out_dir;       // checkpoints and log.jsonl; empty: none written
  std::string log_path;       // the JSON-lines log; empty: out_dir/log.jsonl (none without out_dir)
  std::string resume_dir;
  int64_t eval_every = 0;    // held-out evaluation every this many steps (0: at the end only)
  int64_t eval_examples = 64;
  int64_t save_every = 0;    // checkpoint every this many steps (0: at the end only)
  double peak_flops = 0.0;   // the machine's FMA peak for `threads` threads (0: not shown)
  bool quiet = false;        // no progress line
  bool dry_run = false;      // check the config and the memory per rank, print it, stop
};

// One step's record (a line of log.jsonl).
struct StepLog {
  int64_t step = 0;
  double loss = 0.0;        // mean over the step's counted tokens
  double tokens_per_s = 0.0;
  float lr = 0.0f;
  double grad_norm = 0.0;   // before clipping
  double seconds = 0.0;
  double flop_utilization = 0.0;  // model FLOPs per second / peak_flops (0: no peak)
  uint64_t peak_rss = 0;    // the process peak resident set, the most of any rank
  uint64_t activation_bytes = 0;  // per rank, what the plan holds (TrainSummary's)
  uint64_t needed_bytes = 0;      // per rank, what --max-memory is checked against
  bool bf16 = false;              // the layers' products ran in BF16 (logged as "bf16": true)
  // Communication of the step, the most of any rank: bytes sent by the sequence-parallel
  // attention (within a group) and by the gradient all-reduce (and the rest of the
  // step's collectives), and the time blocked waiting on either.
  uint64_t attention_bytes = 0, allreduce_bytes = 0;
  double comm_wait_seconds = 0.0;
  // Of comm_wait_seconds, the most of any rank: the time blocked in the attention's
  // transfers; and the time the gradient all-reduce held the step up after the backward
  // (all of it when not overlapped; what was left to finish when overlapped).
  double attention_wait_seconds = 0.0, allreduce_seconds = 0.0;
  nlohmann::json to_json() const;
};

struct EvalLog {
  int64_t step = 0;
  double loss = 0.0;
  double token_accuracy = 0.0;     // counted tokens predicted right (argmax)
  double sequence_accuracy = 0.0;  // sequences with every counted token right (passkey: the
                                   // key retrieved)
  int64_t examples = 0;
};

struct TrainSummary {
  std::vector<StepLog> steps;  // this run's steps
  std::vector<EvalLog> evals;
  int64_t first_step = 1;
  double seconds = 0.0;
  uint64_t activation_bytes = 0;  // per rank, the plan
  uint64_t param_bytes = 0;       // weights, gradients and AdamW moments (and with bf16 the
                                  // BF16 copies of the layers' matrices)
  // The layers' products: "f32", "bf16 (AVX-512 BF16)" or "bf16 (portable)".
  std::string products = "f32";
  uint64_t workspace_bytes = 0;   // per rank: attention, kernel and communication buffers
  uint64_t baseline_bytes = 0;    // the process's resident set before the run's buffers
  // What --max-memory is checked against: the sum of the above.
  int64_t longest_ctx = 0;        // with --max-memory: the longest ctx within it (0: none)
  uint64_t needed_bytes() const { return activation_bytes + param_bytes + workspace_bytes + baseline_bytes; }
};

// Model FLOPs of one training step on `sequences` sequences of n tokens: 6 x (matrix
// params, the output head included) x tokens, plus causal attention's 6 x n^2 x H x d per
// layer per sequence (forward 2 n^2 H d, backward twice that). What checkpointing
// recomputes is not counted (the utilization is the model's, as the field reports it).
double train_step_flops(const SynthSpec& spec, int64_t n, int64_t sequences);

// The spec of the model a config trains (preset, or read from model_path).
SynthSpec config_spec(const TrainConfig& c);

// Throws Error(BadInput) naming the flag for a config that cannot run (called by
// run_training before anything is allocated).
void check_config(const TrainConfig& c, int world_size);

TrainSummary run_training(const TrainConfig& c, comm::Communicator& world);

}  // namespace tandem::train
