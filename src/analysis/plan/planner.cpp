// The cost model of `tandem plan`: formulas and the per-strategy predictions.
#include "tandem/analysis/planner.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <fmt/format.h>

#include "analysis/device_time.hpp"
#include "analysis/planner_format.hpp"
#include "tandem/parallel/scheme.hpp"
#include "tandem/core/dtype.hpp"
#include "tandem/core/error.hpp"

namespace tandem::analysis {

// ---- Formulas ----

double linear_flops(const ModelShape& m, double tokens) {
  return 2.0 * double(m.layer_matmul_params()) * tokens;
}

double causal_attention_flops(const ModelShape& m, double n) {
  return 4.0 * double(m.n_head * m.head_dim) * n * (n + 1) / 2;
}

// GPU formats the profiles know by these names (fp16 is GGUF's f16), then every weight
// matrix type of the traits table (core/dtype.hpp).
const std::vector<std::string>& weight_dtypes() {
  static const std::vector<std::string> v = [] {
    std::vector<std::string> names = {"bf16", "fp16", "fp8"};
    for (const DTypeInfo& t : dtype_table())
      if (t.matrix && t.type != DType::F16 && t.type != DType::BF16) names.emplace_back(t.name);
    return names;
  }();
  return v;
}

double weight_bytes_per_param(const std::string& dtype) {
  if (dtype == "fp8") return 1;
  const auto t = parse_dtype(dtype == "fp16" ? "f16" : dtype);
  if (!t || !info(*t).matrix || dtype == "f16") return 0;  // f16 is spelled fp16 here
  return double(info(*t).block_bytes) / info(*t).block_size;  // q8_0: 34/32, q4_0: 18/32
}

std::array<LayerMat, 4> layer_mats(const ModelShape& m, int tp) {
  const double H = double(m.n_head), G = double(m.n_head_kv), d = double(m.head_dim);
  const double D = double(m.n_embd), F = double(m.n_ff), kvh = std::max(G, double(tp)) / tp;
  return {{{(H / tp + 2 * kvh) * d, D, MatKind::Qkv},
           {D, H / tp * d, MatKind::Plain},
           {2 * F / tp, D, MatKind::GateUp},
           {D, F / tp, MatKind::Plain}}};
}

double decode_weight_params(const ModelShape& m, int tp) {
  double params = double(m.n_vocab) / tp * double(m.n_embd);  // the output head
  for (const LayerMat& x : layer_mats(m, tp)) params += double(m.n_layer) * x.rows * x.cols;
  return params;
}

double decode_read_bytes(const ModelShape& m, const std::string& dtype, double kv_tokens,
                         double kv_value_bytes) {
  return decode_weight_params(m, 1) * weight_bytes_per_param(dtype) +
         kv_tokens * double(m.n_layer) * 2 * double(m.n_head_kv * m.head_dim) * kv_value_bytes;
}

namespace {
// The registry's phases of a scheme for N tokens on P devices, at b bytes per element.
parallel::CostPhases scheme_phases(const ModelShape& m, std::string_view scheme, double n, int p,
                                   int b) {
  const parallel::Scheme s = parallel::parse_scheme(scheme, p, "--strategy");
  const parallel::CostShape shape{m.n_head, m.n_head_kv, m.head_dim, double(b)};
  return s.desc->cost(s, shape, std::llround(n), p);
}
// Bytes the busiest device sends over all phases.
double busiest_bytes(const parallel::CostPhases& phases) {
  std::vector<double> sent(phases.empty() ? 0 : phases[0].bytes.size(), 0.0);
  for (const auto& ph : phases)
    for (size_t r = 0; r < sent.size(); ++r) sent[r] += ph.bytes[r];
  return sent.empty() ? 0 : *std::max_element(sent.begin(), sent.end());
}
}  // namespace

double ring_kv_bytes(const ModelShape& m, double n, int p, int b) {
  return busiest_bytes(scheme_phases(m, "ring", n, p, b));
}

double pass_q_bytes(const ModelShape& m, double n, int p, int b) {
  return busiest_bytes(scheme_phases(m, "pass-q", n, p, b));
}

double ulysses_bytes(const ModelShape& m, double n, int p, int b) {
  return busiest_bytes(scheme_phases(m, "ulysses", n, p, b));
}

double tp_allreduce_bytes(const ModelShape& m, double tokens, int k, int b) {
  return 2.0 * 2.0 * (k - 1) / k * tokens * double(m.n_embd) * b;
}

std::vector<double> ring_step_pairs(double n, int p, bool zigzag) {
  // One query head, so the work of a phase is its (query, key) pairs.
  ModelShape one;
  one.n_head = one.n_head_kv = one.head_dim = 1;
  std::vector<double> s;
  for (const auto& ph : scheme_phases(one, zigzag ? "zigzag" : "ring", n, p, 1))
    s.push_back(*std::max_element(ph.head_pairs.begin(), ph.head_pairs.end()));
  return s;
}

namespace {

// Everything a strategy's prediction needs, resolved once.
struct Ctx {
  const ModelShape& m;
  const HardwareProfile& hw;
  std::string dtype, attn_dtype;  // weight type of the products, type attention runs in
  double N, dec;          // prompt tokens, decoded tokens
  int P, K;               // devices, devices per node (<= P)
  int b;                  // bytes per activation / KV element
  double L, D, H, G, d, F, V;
  double bpp;             // weight bytes per parameter
  double W;               // weight bytes of the whole model
  int threads_single;     // threads of the single pipeline's device (CPU profiles; else 0)
  int threads_rank;       // threads of each of the P devices (CPU profiles; else 0)
  int64_t single_chunk;   // tokens per forward step of the single pipeline (0: all)

  DeviceTime device(int threads, int sharers) const {
    return DeviceTime(hw, dtype, attn_dtype, threads, sharers);
  }
  const Link& link(bool inter) const { return inter ? hw.inter : hw.intra; }
};

double log2_ceil(int n) { return n <= 1 ? 0 : std::ceil(std::log2(double(n))); }

// Ops of one layer's forward step (norms, products, rope, attention, residuals) and of
// the model's ends (embedding, final norm, output head): their fixed costs.
constexpr double kOpsPerLayer = 9, kOpsPerStep = 3;

// An all-reduce of `bytes` among n devices: a ring's bandwidth term for large messages, a
// tree's latency term for small ones (what NCCL and MPI pick); with a message curve,
// log2(n) exchanges of the whole message (recursive doubling, the small-message case).
double allreduce(const Ctx& c, const DeviceTime& dt, double bytes, int n, bool inter) {
  if (n <= 1) return 0;
  const Link& l = c.link(inter);
  const Curve& curve = inter ? c.hw.curves.inter_message : c.hw.curves.intra_message;
  if (!curve.empty()) return log2_ceil(n) * dt.message(bytes, l, inter);
  return 2.0 * (n - 1) / n * bytes / l.bandwidth + 2 * log2_ceil(n) * l.latency;
}

// One layer's matrix products for `tokens` tokens, weights split tp ways (QKV fused,
// gate and up fused, as the runtime runs them).
double layer_linear(const Ctx& c, const DeviceTime& dt, double tokens, int tp) {
  double t = 0;
  for (const LayerMat& m : layer_mats(c.m, tp))
    t += dt.matmul(tokens, m.rows, m.cols, m.rows * m.cols * c.bpp, m.kind);
  return t;
}

// One layer's elementwise traffic for `tokens` tokens (norms, rope, SwiGLU, residuals)
// and its ops' fixed costs. FP8 products take FP8 inputs too: each product's input
// (D, H*d/tp, D, F/tp values per token) is quantized row by row with a scale per row
// (the dynamic row-wise scaling of Meta's FP8 inference, Llama 3 paper, arXiv 2407.21783,
// section 6.2), read at b bytes and written at 1, a pass the curves (measured on inputs
// already in FP8) do not hold.
double layer_elementwise(const Ctx& c, const DeviceTime& dt, double tokens, int tp) {
  const double per_token = 10 * c.D + 2 * (c.H + c.G) * c.d / tp + 3 * c.F / tp;
  const double quantized =
      c.dtype == "fp8" ? (2 * c.D + c.H * c.d / tp + c.F / tp) * (c.b + 1.0) : 0;
  return dt.stream(tokens * (per_token * c.b + quantized)) + dt.ops(kOpsPerLayer);
}

// Attention of `heads` query heads of `queries` tokens, `triples` visible (query, key,
// head) triples in all: one kernel call, or calls of at most `call_keys` keys each (0:
// one call), at the rate of such calls.
double attention_call(const Ctx& c, const DeviceTime& dt, double triples, double queries,
                      double heads, double kv_bytes = 0, double call_keys = 0) {
  if (triples <= 0 || queries <= 0 || heads <= 0) return 0;
  const double keys = triples / (queries * heads);
  return dt.attention(triples, c.d, queries, call_keys > 0 ? std::min(keys, call_keys) : keys,
                      c.H / c.G, heads, kv_bytes);
}

// The output head for the last token, and the step's fixed costs at its ends.
double model_ends(const Ctx& c, const DeviceTime& dt, int tp) {
  return dt.matmul(1, c.V / tp, c.D, c.V / tp * c.D * c.bpp) + dt.ops(kOpsPerStep);
}

// Activations alive while one layer runs on T tokens with weights split tp ways (no
// chunked prefill): residual + normed input (2D), q, k, v, attention output, FFN gate and up.
double activations(const Ctx& c, double T, int tp) {
  const double kvh = std::max(c.G, double(tp)) / tp;
  return T * (2 * c.D + (c.H / tp + 2 * kvh) * c.d + c.H / tp * c.d + 2 * c.F / tp) * c.b +
         c.V * 4;  // logits of the last token, f32
}

// One decoded token on a device holding `kv_tokens` of the cache (`heads` query heads
// over `kv_heads` KV heads): every matrix product at one token (weight-bound), attention
// over its cache, the output head; and no faster than reading its weights (the layers'
// and the output head's) and its cache once while every device of the node reads a set
// of its own as large (DeviceTime::stream_own: past the last-level cache, the node's
// memory rate shared).
double decode_step(const Ctx& c, const DeviceTime& dt, int tp, double kv_tokens, double heads,
                   double kv_heads) {
  const double kv_bytes = kv_tokens * 2 * kv_heads * c.d * c.b;
  const double calls = c.L * (layer_linear(c, dt, 1, tp) + layer_elementwise(c, dt, 1, tp) +
                              attention_call(c, dt, heads * kv_tokens, 1, heads, kv_bytes)) +
                       model_ends(c, dt, tp);
  return std::max(calls, dt.stream_own(decode_weight_params(c.m, tp) * c.bpp + c.L * kv_bytes));
}

double kv_cache_bytes(const Ctx& c, double tokens, double kv_heads) {
  return tokens * 2 * kv_heads * c.d * c.L * c.b;
}

// How communication shows in the prefill time. `what` names the overlapped transfer
// (nullptr: the strategy overlaps nothing).
std::string comm_phrase(const StrategyPlan& s, const char* what) {
  if (s.comm_seconds <= 0) return "";
  const double pct = 100 * s.exposed_comm_seconds / s.prefill_seconds;
  if (what && s.exposed_comm_seconds <= 0.05 * s.prefill_seconds)
    return fmt::format("its {} ({}/device) hides behind attention compute", what,
                       fmt_bytes(s.bytes_communicated_per_device));
  return fmt::format("communication ({}/device) adds {} ({:.0f}% of prefill)",
                     fmt_bytes(s.bytes_communicated_per_device),
                     fmt_seconds(s.exposed_comm_seconds), pct);
}

// `compute` and `total` include the model's ends (output head, fixed costs).
void finish(const Ctx& c, StrategyPlan& s, double compute, double comm, double total) {
  s.compute_seconds = compute;
  s.comm_seconds = comm;
  s.prefill_seconds = total;
  s.exposed_comm_seconds = std::max(0.0, s.prefill_seconds - s.compute_seconds);
  s.memory_bytes = s.weight_bytes + s.kv_bytes + s.activation_bytes;
  s.fits = s.memory_bytes <= c.hw.memory_capacity;
  s.seconds = s.prefill_seconds + c.dec * s.decode_seconds_per_token;
}

StrategyPlan not_applicable(std::string name, std::string why) {
  StrategyPlan s;
  s.strategy = std::move(name);
  s.layout = std::string(1, '-');  // (a literal here trips GCC 12's -Wrestrict)
  s.applicable = false;
  s.note = fmt::format("n/a: {}", why);
  return s;
}

StrategyPlan single(const Ctx& c) {
  StrategyPlan s;
  s.strategy = "single";
  s.layout = c.threads_single > 0 ? fmt::format("1 device x {} threads", c.threads_single)
                                  : "1 device";
  s.weight_bytes = c.W;
  s.kv_bytes = kv_cache_bytes(c, c.N + c.dec, c.G);
  const int64_t n = int64_t(c.N);
  const int64_t chunk = c.single_chunk > 0 ? std::min(c.single_chunk, n) : n;
  s.activation_bytes = activations(c, double(chunk), 1);
  const DeviceTime dt = c.device(c.threads_single, 1);
  // Chunk by chunk, as the runtime prefills: each chunk's queries see the chunks before
  // it and their own causal triangle.
  double compute = 0;
  for (int64_t at = 0; at < n; at += chunk) {
    const double m = double(std::min(chunk, n - at));
    const double triples = c.H * (m * double(at) + m * (m + 1) / 2);
    compute += c.L * (layer_linear(c, dt, m, 1) + layer_elementwise(c, dt, m, 1) +
                      attention_call(c, dt, triples, m, c.H));
  }
  compute += model_ends(c, dt, 1);
  s.decode_seconds_per_token = decode_step(c, dt, 1, c.N, c.H, c.G);
  finish(c, s, compute, 0, compute);
  s.note = "all work on one device, no communication";
  return s;
}

// The name of a scheme's layout in tables: "ring 4", "ulysses 2 x ring 2", ...
std::string layout_of(const parallel::Scheme& s, int P) {
  if (s.is("hybrid")) return fmt::format("ulysses {} x ring {}", s.ulysses, s.ring);
  if (s.is("zigzag")) return fmt::format("zigzag ring {}", P);
  if (s.is("pass-q")) return fmt::format("pass-Q ring {}", P);
  return fmt::format("{} {}", s.kind(), P);
}

// A runtime scheme at P devices, from its registry descriptor: its own placement, its
// per-rank attention work and its bytes per phase (parallel/scheme_cost.hpp), timed on
// the profile. Ring steps overlap the transfer of the next block with the attention on
// the block in hand; exchanges (all-to-alls, the last pass-Q partials) do not overlap.
StrategyPlan scheme_plan(const Ctx& c, const parallel::Scheme& scheme) {
  StrategyPlan s;
  s.strategy = std::string(scheme.kind());
  s.layout = layout_of(scheme, c.P);
  if (c.threads_rank > 0) s.layout += fmt::format(" x {} threads", c.threads_rank);
  s.ulysses = scheme.is("hybrid") ? scheme.ulysses : scheme.is("ulysses") ? c.P : 1;
  s.ring = scheme.is("hybrid") ? scheme.ring : scheme.is("ulysses") ? 1 : c.P;
  const parallel::CostShape shape{c.m.n_head, c.m.n_head_kv, c.m.head_dim, double(c.b)};
  const int64_t n = int64_t(c.N);
  const auto phases = scheme.desc->cost(scheme, shape, n, c.P);
  const DeviceTime dt = c.device(c.threads_rank, c.K);
  double attn = 0, attn_compute = 0, comm = 0;
  bool overlapped = false;  // some transfer travels while attention runs
  std::vector<double> sent(size_t(c.P), 0.0), pairs(size_t(c.P), 0.0);
  for (const parallel::CostPhase& p : phases) {
    // The members of a group span group * stride consecutive devices: beyond a node,
    // the link across nodes carries their traffic.
    const bool inter = p.group * p.stride > c.K;
    const bool exchange = p.kind == parallel::CostPhase::Kind::Exchange && p.stride == 1;
    const bool ring_step = p.kind == parallel::CostPhase::Kind::RingStep;
    // The runtime's calls on a CPU profile; a GPU profile prices each block as one call, as
    // GPU ring attention (Meta's context parallelism, ring-flash-attention) runs it.
    const double call_keys = c.hw.threads > 0 ? p.call_keys : 0;
    double phase = 0, phase_comp = 0, phase_comm = 0;
    std::vector<double> comps(sent.size(), 0.0);
    for (size_t r = 0; r < sent.size(); ++r) {
      sent[r] += p.bytes[r];
      pairs[r] += p.head_pairs[r];
      const double q = r < p.query_tokens.size() ? p.query_tokens[r] : 0;
      const double h = r < p.query_heads.size() ? p.query_heads[r] : 0;
      const double comp = attention_call(c, dt, p.head_pairs[r], q, h, 0, call_keys);
      const double t_comm = p.bytes[r] <= 0 ? 0
                            : exchange      ? dt.alltoall(p.bytes[r], p.group, c.link(inter), inter)
                                            : dt.message(p.bytes[r], c.link(inter), inter);
      comps[r] = comp;
      overlapped |= ring_step && p.bytes[r] > 0;
      phase = std::max(phase, ring_step ? std::max(comp, t_comm) : comp + t_comm);
      phase_comp = std::max(phase_comp, comp);
      phase_comm = std::max(phase_comm, t_comm);
    }
    // Attention alone before an exchange (Ulysses' heads): a node's ranks that finish
    // early leave their cores to the rest (DeviceTime::side_by_side). No transfer here.
    if (p.kind == parallel::CostPhase::Kind::Compute) {
      phase_comp = 0;
      for (size_t at = 0; at < comps.size(); at += size_t(c.K)) {
        const auto end = comps.begin() + long(std::min(comps.size(), at + size_t(c.K)));
        phase_comp = std::max(phase_comp, dt.side_by_side({comps.begin() + long(at), end}));
      }
      phase = phase_comp;
    }
    attn += phase;
    attn_compute += phase_comp;
    comm += phase_comm;
  }
  // The products and elementwise ops, step by step: each rank's tokens of each band.
  const int64_t band = parallel::scheme_band(scheme, n, c.P);
  const auto bands = parallel::bands_of(n, band);
  double lin = 0;
  for (const parallel::TokenRange& b : bands) {
    double most = 0;
    for (int r = 0; r < c.P; ++r) {
      const auto tokens = double(parallel::range_tokens(
          parallel::shard_ranges(b.size(), c.P, r, scheme.placement)));
      most = std::max(most, layer_linear(c, dt, tokens, 1) + layer_elementwise(c, dt, tokens, 1));
    }
    lin += c.L * most;
  }
  lin += model_ends(c, dt, 1);
  // Memory: the runtime's own cache capacity per rank (its shard and its share of the
  // decoded tokens) and its strategy's workspace (counted in f32 by the runtime, scaled
  // to the profile's element size).
  const parallel::AttnShape ashape{int(c.H), int(c.G), int(c.d), 1.0f};
  double cache_tokens = 0, workspace = 0, step = 0;
  for (int r = 0; r < c.P; ++r) {
    cache_tokens = std::max(cache_tokens, double(parallel::scheme_cache_capacity(
                                              scheme, n, int64_t(c.dec), c.P, r)));
    // A chunked prefill's step is a band's share, else the whole shard.
    const int64_t m = parallel::scheme_step_tokens(scheme, n, c.P, r);
    step = std::max(step, double(m));
    workspace = std::max(workspace, double(parallel::scheme_workspace_bytes(scheme, ashape, m, n, c.P)));
  }
  s.weight_bytes = c.W;
  s.kv_bytes = kv_cache_bytes(c, cache_tokens, c.G);
  s.activation_bytes = activations(c, step, 1) + workspace * c.b / 4.0;
  s.bytes_communicated_per_device = c.L * *std::max_element(sent.begin(), sent.end());
  // Decode against the KV cache sharded across the ranks: each reads its shard, then the
  // partial outputs and log-sum-exps of the new token are combined across all P, and
  // the sampled token goes to every rank.
  const bool inter = c.P > c.K;
  const double merge = c.H * c.d * c.b + 4 * c.H;
  const double kv_shard = std::ceil((c.N + 1) / c.P);
  s.decode_seconds_per_token = decode_step(c, dt, 1, kv_shard, c.H, c.G) +
                               c.L * allreduce(c, dt, merge, c.P, inter) +
                               allreduce(c, dt, 8, c.P, inter);
  s.decode_bytes_per_token = c.L * 2.0 * (c.P - 1) / c.P * merge;
  finish(c, s, lin + c.L * attn_compute, c.L * comm, lin + c.L * attn);
  const double mean = *std::max_element(pairs.begin(), pairs.end()) > 0
                          ? std::accumulate(pairs.begin(), pairs.end(), 0.0) / c.P
                          : 0;
  const double imbalance = mean > 0 ? *std::max_element(pairs.begin(), pairs.end()) / mean : 1;
  s.note = imbalance > 1.05 ? fmt::format("busiest device does {:.2f}x the mean attention; ", imbalance)
                            : "balanced attention work; ";
  s.note += comm_phrase(s, overlapped ? "transfer" : nullptr);
  return s;
}

// Tensor parallelism over the K devices of a node x zigzag pass-KV ring over the nodes:
// the ring's steps as zigzag's descriptor places them, each device computing H/K heads.
StrategyPlan tp_ring(const Ctx& c) {
  const int tp = c.K, cp = c.P / c.K;
  if (tp <= 1) return not_applicable("tp+ring", "one device per node");
  if (int64_t(c.H) % tp != 0)
    return not_applicable("tp+ring", fmt::format("K = {} does not divide H = {}", tp, c.H));
  StrategyPlan s;
  s.strategy = "tp+ring";
  s.tp = tp;
  s.ring = cp;
  s.layout = cp > 1 ? fmt::format("tp{} x zigzag ring {}", tp, cp) : fmt::format("tp{}", tp);
  const double tok = c.N / cp, kvh = std::max(c.G, double(tp)) / tp, heads = c.H / tp;
  const DeviceTime dt = c.device(c.threads_rank, c.K);
  const double lin = c.L * (layer_linear(c, dt, tok, tp) + layer_elementwise(c, dt, tok, tp)) +
                     model_ends(c, dt, tp);
  const double ar = c.L * 2 * allreduce(c, dt, tok * c.D * c.b, tp, false);
  const double chunk = tok * 2 * kvh * c.d * c.b;
  // The ring's steps: zigzag shards of N over cp members, heads/tp of the query heads.
  double ring_total = 0, ring_compute = 0, ring_comm = 0;
  {
    const auto steps = ring_step_pairs(c.N, cp, true);
    // Every step after the first merges its partial output into the running one by their
    // log-sum-exps (the online softmax of ring attention): both read, the result written,
    // tok x heads x d values each (the f32 log-sum-exps, d times fewer, are left out).
    const double merge = dt.stream(3 * tok * heads * c.d * c.b);
    for (size_t st = 0; st < steps.size(); ++st) {
      const double comp =
          attention_call(c, dt, heads * steps[st], tok, heads) + (st > 0 ? merge : 0);
      const double t_comm = st + 1 < steps.size() ? dt.message(chunk, c.hw.inter, true) : 0;
      ring_total += std::max(comp, t_comm);
      ring_compute += comp;
      ring_comm += t_comm;
    }
  }
  s.weight_bytes = c.W / tp;
  s.kv_bytes = kv_cache_bytes(c, (c.N + c.dec) / cp, kvh);
  s.activation_bytes = activations(c, tok, tp) + (cp > 1 ? 2 * chunk : 0);
  s.bytes_communicated_per_device =
      c.L * (tp_allreduce_bytes(c.m, tok, tp, c.b) + (cp - 1) * chunk);
  s.decode_seconds_per_token =
      decode_step(c, dt, tp, c.N / cp, heads, kvh) +
      c.L * (2 * allreduce(c, dt, c.D * c.b, tp, false) +
             allreduce(c, dt, heads * c.d * c.b + 4 * heads, cp, true));
  s.decode_bytes_per_token = c.L * (2 * 2.0 * (tp - 1) / tp * c.D * c.b +
                                    2.0 * (cp - 1) / cp * (heads * c.d * c.b + 4 * heads));
  finish(c, s, lin + c.L * ring_compute, ar + c.L * ring_comm, lin + ar + c.L * ring_total);
  s.note = fmt::format("weights split {} ways; ", tp);
  if (cp > 1) {
    const double ring_exposed = c.L * (ring_total - ring_compute);
    s.note += fmt::format("balanced causal work; ring K/V transfer ({}/device) {}; ",
                          fmt_bytes(c.L * (cp - 1) * chunk),
                          ring_exposed <= 0.05 * s.prefill_seconds
                              ? std::string("hides behind attention compute")
                              : fmt::format("adds {}", fmt_seconds(ring_exposed)));
  }
  s.note += fmt::format("TP all-reduces ({}/device) add {} ({:.0f}% of prefill)",
                        fmt_bytes(c.L * tp_allreduce_bytes(c.m, tok, tp, c.b)), fmt_seconds(ar),
                        100 * ar / s.prefill_seconds);
  return s;
}

std::string resolve_dtype(PlanRequest& r) {
  if (r.dtype != "auto") return "as asked";
  const double bf16 = double(r.model.params()) * 2;
  const double node = r.hw.memory_capacity * std::min(r.gpus, r.gpus_per_node);
  if (bf16 > 0.9 * node && r.hw.flops.count("fp8")) {
    r.dtype = "fp8";
    return fmt::format("auto: bf16 weights ({}) exceed 90% of a node's {} memory", fmt_bytes(bf16),
                       fmt_bytes(node));
  }
  r.dtype = "bf16";
  return "auto";
}

}  // namespace

namespace {
// Every sequence-parallel scheme of the runtime, as its registry describes it, then the
// planner's own tensor-parallel layout.
void add_every_strategy(const Ctx& c, const PlanRequest& req, int K, std::vector<StrategyPlan>& v) {
  for (const parallel::SchemeDesc* d : parallel::scheme_registry()) {
    if (d->name == "local") continue;
    const std::string name(d->name);
    if (req.gpus < 2) {
      v.push_back(not_applicable(name, "needs --gpus >= 2"));
      continue;
    }
    std::string why;
    auto scheme = parallel::configure_scheme(d->name, req.gpus, K, &why);
    if (scheme) scheme->chunk = parallel::resolve_sp_chunk(req.sp_chunk, req.gpus);
    v.push_back(scheme ? scheme_plan(c, *scheme) : not_applicable(name, why));
  }
  v.push_back(req.gpus > 1 ? tp_ring(c) : not_applicable("tp+ring", "needs --gpus >= 2"));
}
}  // namespace

Plan make_plan(PlanRequest req, std::string_view strategy) {
  if (req.tokens <= 0) bad_input("--tokens {} must be > 0", req.tokens);
  if (req.tokens > kMaxPlanTokens)
    bad_input("--tokens {} is too large (at most {})", req.tokens, kMaxPlanTokens);
  if (req.gpus < 1 || req.gpus > kMaxPlanDevices)
    bad_input("--gpus {} must be from 1 to {}", req.gpus, kMaxPlanDevices);
  if (req.gpus_per_node < 1 || req.gpus_per_node > kMaxPlanDevices)
    bad_input("--gpus-per-node {} must be from 1 to {}", req.gpus_per_node, kMaxPlanDevices);
  if (req.decode_tokens > kMaxPlanTokens)
    bad_input("--decode-tokens {} is too large (at most {})", req.decode_tokens, kMaxPlanTokens);
  if (req.gpus > req.gpus_per_node && req.gpus % req.gpus_per_node != 0)
    bad_input("--gpus {} is not a multiple of --gpus-per-node {}", req.gpus, req.gpus_per_node);
  if (req.decode_tokens < 0) bad_input("--decode-tokens {} must be >= 0", req.decode_tokens);
  req.model.validate("--model " + req.model.name);
  req.hw.validate("--hardware " + req.hw.name);
  if (!req.hw.has_links && req.gpus > 1)
    bad_input("--gpus {}: the hardware profile '{}' has no link figures (intra_node, "
              "inter_node; `tandem calibrate` leaves them out when it cannot measure MPI), so "
              "it predicts one device only (--gpus 1)", req.gpus, req.hw.name);
  if (req.dtype != "auto" && weight_bytes_per_param(req.dtype) == 0) {
    std::string names;
    for (const auto& n : weight_dtypes()) names += n + ", ";
    bad_input("--dtype '{}' is not one of {}auto", req.dtype, names);
  }
  Plan plan;
  plan.dtype_reason = resolve_dtype(req);
  const auto& m = req.model;
  const int K = std::min(req.gpus, req.gpus_per_node);
  const int b = req.dtype == "f32" ? 4 : req.hw.activation_bytes;
  // A device of a CPU profile is a rank's threads: the single pipeline has the node's
  // (or the request's), each of K ranks on a node its share.
  const int node_threads = req.hw.threads;
  // (A GPU profile's device is the GPU: no threads.)
  const int t_single = node_threads <= 0 ? 0 : req.threads > 0 ? req.threads : node_threads;
  const int t_rank = node_threads <= 0 ? 0 : req.threads > 0 ? req.threads : std::max(1, node_threads / K);
  Ctx c{m, req.hw, req.dtype, b >= 4 ? "f32" : req.hw.attention_dtype(),
        double(req.tokens), double(req.decode_tokens), req.gpus, K, b,
        double(m.n_layer), double(m.n_embd), double(m.n_head), double(m.n_head_kv),
        double(m.head_dim), double(m.n_ff), double(m.n_vocab),
        weight_bytes_per_param(req.dtype),
        double(m.params()) * weight_bytes_per_param(req.dtype),
        t_single, t_rank, node_threads > 0 ? kCpuPrefillChunk : 0};
  plan.flops = c.L * (linear_flops(m, c.N) + causal_attention_flops(m, c.N)) + 2 * c.V * c.D;
  auto& v = plan.strategies;
  if (!strategy.empty()) {  // one configuration, as the runtime names it
    if (strategy == "single" || strategy == "local") {
      v.push_back(single(c));
    } else {
      auto scheme = parallel::parse_scheme(strategy, req.gpus, "--schemes");
      scheme.chunk = parallel::resolve_sp_chunk(req.sp_chunk, req.gpus);
      v.push_back(scheme.is("local") ? single(c) : scheme_plan(c, scheme));
    }
  } else {
    v.push_back(single(c));
    add_every_strategy(c, req, K, v);
  }
  for (auto& s : v)
    if (s.applicable && !s.fits)
      s.note = fmt::format("does not fit: {} > {}; ", fmt_bytes(s.memory_bytes),
                           fmt_bytes(req.hw.memory_capacity)) + s.note;
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i].applicable && v[i].fits && (plan.best < 0 || v[i].seconds < v[size_t(plan.best)].seconds))
      plan.best = int(i);
  plan.request = std::move(req);
  plan.reason = recommendation_reason(plan);
  return plan;
}

StrategyPlan plan_strategy(PlanRequest req, std::string_view strategy) {
  TD_CHECK(!strategy.empty());
  return make_plan(std::move(req), strategy).strategies.front();
}

PlanRequest plan_request(const std::string& model, HardwareProfile hw, int64_t tokens, int gpus,
                         int gpus_per_node, int64_t decode_tokens, const std::string& dtype) {
  PlanRequest req;
  req.hw = std::move(hw);
  std::error_code ec;
  std::string file_dtype;
  if (auto shape = named_shape(model)) {
    req.model = *shape;
  } else if (std::filesystem::is_regular_file(model, ec)) {
    auto g = shape_from_gguf(model);
    req.model = g.shape;
    file_dtype = g.weight_dtype;
  } else {
    std::string names;
    for (const auto& x : names_of_shapes()) names += (names.empty() ? "" : ", ") + x;
    bad_input("--model '{}': not a GGUF file nor a named shape ({})", model, names);
  }
  if (file_dtype == "f16") file_dtype = "fp16";  // the planner's spelling of GGUF's f16
  req.dtype = !dtype.empty() ? dtype : weight_bytes_per_param(file_dtype) > 0 ? file_dtype : "auto";
  req.tokens = tokens;
  req.decode_tokens = decode_tokens;
  req.gpus = gpus;
  req.gpus_per_node = gpus_per_node;
  return req;
}

}  // namespace tandem::analysis
