#pragma once
// The cost model behind `tandem plan`: for a model shape, a token count N, P devices with
// K per node and a hardware profile, predicts per strategy the prefill time, the decode time
// per token, the memory per device and the bytes each device sends, marks what does not fit,
// and recommends the fastest strategy that fits. Formulas: docs/planner.md.
//
// Vocabulary: N tokens, P devices, K devices per node, H query heads, G KV heads, d head
// dim, D model dim, F FFN dim, V vocab, L layers; b bytes per activation element.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tandem/analysis/hardware.hpp"
#include "tandem/analysis/model_shapes.hpp"

namespace tandem::analysis {

// ---- Formulas (per layer unless said otherwise) ----

// FLOPs of one layer's matrix products for `tokens` tokens: 2 * layer_matmul_params * tokens.
double linear_flops(const ModelShape& m, double tokens);
// Causal attention FLOPs of one layer over n tokens, counted exactly: QK^T and PV each take
// 2*d FLOPs per (query, key) pair per head, and query i sees i+1 keys, so
// 4 * H * d * n(n+1)/2.
double causal_attention_flops(const ModelShape& m, double n);
// Weight bytes per parameter of a weight type (bf16 2, fp8 1, q8_0 34/32, q4_0 18/32, ...);
// 0 for an unknown type.
double weight_bytes_per_param(const std::string& dtype);
// Weight types `tandem plan --dtype` accepts.
const std::vector<std::string>& weight_dtypes();

// A layer's matrix products on a device holding 1/tp of them (QKV, gate/up fused as the
// runtime runs them): rows x cols of QKV, output, gate/up and down.
struct LayerMat {
  double rows, cols;
  MatKind kind;
};
std::array<LayerMat, 4> layer_mats(const ModelShape& m, int tp);
// Weights a decode step reads on such a device: every product's, the layers' and the
// output head's (not the token embedding's, of which it reads one row).
double decode_weight_params(const ModelShape& m, int tp);
// Bytes one decode step of the single pipeline reads from memory: those weights in
// `dtype`, and K and V of `kv_tokens` tokens at `kv_value_bytes` a value.
double decode_read_bytes(const ModelShape& m, const std::string& dtype, double kv_tokens,
                         double kv_value_bytes);

// Bytes the busiest device sends per layer during prefill (b = bytes per element), from
// the scheme registry's formulas (parallel/scheme_cost.hpp); with even shards:
//   ring / zigzag pass-KV: (P-1) * N/P * 2*G*d * b               (its K/V shard, P-1 hops)
//   pass-Q:  (P-1) * N/P * H*d*b  +  (P-1) * N/P * (H*d*b + 4*H) (Q hops, then partial O+lse)
//   Ulysses: (P-1)/P * N/P * (2*H + 2*max(G, P)) * d * b         (all-to-alls of Q,K,V and O;
//            K/V heads are replicated when P > G)
//   TP all-reduce (K-way, T tokens): 2 all-reduces * 2(K-1)/K * T*D*b
double ring_kv_bytes(const ModelShape& m, double n, int p, int b);
double pass_q_bytes(const ModelShape& m, double n, int p, int b);
double ulysses_bytes(const ModelShape& m, double n, int p, int b);
double tp_allreduce_bytes(const ModelShape& m, double tokens, int k, int b);

// Query-key pairs the busiest device computes at each of the P ring steps (step 0 is the
// local block), from the registry's placements. Contiguous shards of c = N/P: c(c+1)/2,
// then c^2 (the last rank always has a full block). Zigzag shards (chunks r and 2P-1-r of
// c' = N/2P): c'^2 + c'(c'+1), then 2c'^2 on every rank.
std::vector<double> ring_step_pairs(double n, int p, bool zigzag);

// ---- The plan ----

// Bounds of a request (make_plan refuses past them, naming the flag). The planner's work
// grows with P squared (every rank's share of every ring step): 4096 devices plan in a
// few seconds and a few hundred MiB, 16384 took over a minute and 4 GiB. Token counts
// are only arithmetic; 2^40 keeps every product of them finite.
inline constexpr int kMaxPlanDevices = 4096;
// Tokens per forward step of the runtime's single pipeline (Engine::kDefaultChunk): on a
// CPU profile the planner prefills in such chunks, as the runtime does.
inline constexpr int64_t kCpuPrefillChunk = 512;
inline constexpr int64_t kMaxPlanTokens = int64_t{1} << 40;

struct PlanRequest {
  ModelShape model;
  HardwareProfile hw;
  int64_t tokens = 0;         // N: prompt tokens
  int gpus = 1;               // P
  int gpus_per_node = 1;      // K
  std::string dtype = "auto"; // weight type, or "auto"
  int64_t decode_tokens = 0;  // tokens generated after the prompt (counted in `seconds`)
  // Tokens per rank per prefill step of a chunked prefill (Scheme::chunk; compare passes
  // the runtime's default, parallel::kAutoSpChunk); 0: each rank's whole shard in one
  // step, as the schemes are usually run.
  int64_t sp_chunk = 0;
  // Threads of each device on a CPU profile (HardwareProfile::threads > 0); 0: the
  // profile's threads for the single pipeline, split evenly between the ranks of a node.
  int threads = 0;
};

struct StrategyPlan {
  std::string strategy;  // single, ring, zigzag, pass-q, ulysses, hybrid, tp+ring
  std::string layout;    // the degrees, e.g. "tp8 x zigzag ring 16"
  int tp = 1, ulysses = 1, ring = 1;
  bool applicable = true;  // false: the layout does not exist for this P, K, H
  bool fits = false;
  // Per device.
  double weight_bytes = 0, kv_bytes = 0, activation_bytes = 0, memory_bytes = 0;
  double compute_seconds = 0;        // prefill compute of the busiest device
  double comm_seconds = 0;           // prefill communication time, hidden or not
  double exposed_comm_seconds = 0;   // prefill time added by communication
  double prefill_seconds = 0;
  double decode_seconds_per_token = 0;
  double bytes_communicated_per_device = 0;  // sent during prefill
  double decode_bytes_per_token = 0;         // sent per decoded token
  double seconds = 0;  // prefill + decode_tokens * decode: what the recommendation ranks
  std::string note;
};

struct Plan {
  PlanRequest request;   // with dtype resolved
  std::string dtype_reason;
  double flops = 0;      // prefill FLOPs of the whole model (linear + attention)
  std::vector<StrategyPlan> strategies;
  int best = -1;         // index into strategies; -1 when nothing fits
  std::string reason;    // one line: why best (or why none)
};

// Resolves "auto" (bf16, or fp8 when bf16 weights exceed one node's memory and the
// profile has fp8), checks the request and predicts every strategy: single (the local
// scheme), every other scheme of the registry (parallel/scheme.hpp) in the configuration
// it takes at P devices with K per node, and tp+ring. With `strategy` (a scheme as the
// runtime spells it: local or single, ring, hybrid:2x2, ...) the plan holds that one
// configuration only. Throws Error(BadInput) naming the flag at fault.
Plan make_plan(PlanRequest req, std::string_view strategy = {});
// The prediction of one configuration (make_plan with `strategy`).
StrategyPlan plan_strategy(PlanRequest req, std::string_view strategy);
// A request for a model given as a GGUF file or a named shape (plan's and compare's
// --model); the weight type is the file's unless `dtype` is given ("auto" for shapes).
PlanRequest plan_request(const std::string& model, HardwareProfile hw, int64_t tokens, int gpus,
                         int gpus_per_node, int64_t decode_tokens, const std::string& dtype = "");

nlohmann::json plan_to_json(const Plan& plan);
std::string plan_table(const Plan& plan);

}  // namespace tandem::analysis
