// The cost model of `tandem plan`: formulas and the per-strategy predictions.
#include "tandem/analysis/planner.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "analysis/planner_format.hpp"
#include "tandem/core/error.hpp"

namespace tandem::analysis {

// ---- Formulas ----

double linear_flops(const ModelShape& m, double tokens) {
  return 2.0 * double(m.layer_matmul_params()) * tokens;
}

double causal_attention_flops(const ModelShape& m, double n) {
  return 4.0 * double(m.n_head * m.head_dim) * n * (n + 1) / 2;
}

const std::vector<std::string>& weight_dtypes() {
  static const std::vector<std::string> v = {"bf16", "fp16", "fp8", "f32", "q8_0", "q4_0"};
  return v;
}

double weight_bytes_per_param(const std::string& dtype) {
  if (dtype == "bf16" || dtype == "fp16") return 2;
  if (dtype == "fp8") return 1;
  if (dtype == "f32") return 4;
  if (dtype == "q8_0") return 34.0 / 32;  // 32 int8 values + an f16 scale
  if (dtype == "q4_0") return 18.0 / 32;  // 32 4-bit values + an f16 scale
  return 0;
}

double ring_kv_bytes(const ModelShape& m, double n, int p, int b) {
  return (p - 1) * (n / p) * 2.0 * double(m.n_head_kv * m.head_dim) * b;
}

double pass_q_bytes(const ModelShape& m, double n, int p, int b) {
  const double hd = double(m.n_head * m.head_dim);
  return (p - 1) * (n / p) * hd * b + (p - 1) * (n / p) * (hd * b + 4.0 * double(m.n_head));
}

double ulysses_bytes(const ModelShape& m, double n, int p, int b) {
  const double heads = 2.0 * double(m.n_head) + 2.0 * double(std::max<int64_t>(m.n_head_kv, p));
  return double(p - 1) / p * (n / p) * heads * double(m.head_dim) * b;
}

double tp_allreduce_bytes(const ModelShape& m, double tokens, int k, int b) {
  return 2.0 * 2.0 * (k - 1) / k * tokens * double(m.n_embd) * b;
}

std::vector<double> ring_step_pairs(double n, int p, bool zigzag) {
  std::vector<double> s(static_cast<size_t>(p), 0.0);
  if (zigzag) {
    const double c = n / (2.0 * p);
    s[0] = c * c + c * (c + 1);
    for (int i = 1; i < p; ++i) s[size_t(i)] = 2 * c * c;
  } else {
    const double c = n / p;
    s[0] = c * (c + 1) / 2;
    for (int i = 1; i < p; ++i) s[size_t(i)] = c * c;
  }
  return s;
}

namespace {

// Everything a strategy's prediction needs, resolved once.
struct Ctx {
  const ModelShape& m;
  const HardwareProfile& hw;
  double N, dec;          // prompt tokens, decoded tokens
  int P, K;               // devices, devices per node (<= P)
  int b;                  // bytes per activation / KV element
  double L, D, H, G, d, F, V;
  double W;               // weight bytes of the whole model
  double W_read;          // weight bytes one decoded token reads (all but the embedding
                          // table, which is only indexed, unless it doubles as the output)
  double lin_rate, attn_rate, mem_rate;  // achievable FLOP/s and bytes/s of one device
};

double log2_ceil(int n) { return n <= 1 ? 0 : std::ceil(std::log2(double(n))); }

// Collectives: bandwidth term of a ring, latency term of a tree (what NCCL and MPI pick
// for large and small messages).
double allreduce(double bytes, int n, const Link& l) {
  if (n <= 1) return 0;
  return 2.0 * (n - 1) / n * bytes / l.bandwidth + 2 * log2_ceil(n) * l.latency;
}
double allgather(double bytes, int n, const Link& l) {
  if (n <= 1) return 0;
  return double(n - 1) / n * bytes / l.bandwidth + log2_ceil(n) * l.latency;
}
// All-to-all among n devices, K per node, `bytes` sent per device spread evenly over the
// peers: the intra- and inter-node parts move in parallel over their own links.
double alltoall(double bytes, int n, const Ctx& c) {
  if (n <= 1) return 0;
  if (n <= c.K) return bytes / c.hw.intra.bandwidth + (n - 1) * c.hw.intra.latency;
  const double intra = bytes * (c.K - 1) / (n - 1), inter = bytes * (n - c.K) / (n - 1);
  return std::max(intra / c.hw.intra.bandwidth, inter / c.hw.inter.bandwidth) +
         (n - 1) * c.hw.inter.latency;
}

// One layer's ring attention: per step, the busiest device's attention (`heads` query
// heads) overlapped with sending one chunk to the next device.
struct RingTime {
  double total = 0, compute = 0, comm = 0;
};
RingTime ring_time(const Ctx& c, int r, bool zigzag, double heads, double chunk, const Link& l) {
  RingTime t;
  const auto pairs = ring_step_pairs(c.N, r, zigzag);
  for (int s = 0; s < r; ++s) {
    const double comp = 4.0 * heads * c.d * pairs[size_t(s)] / c.attn_rate;
    const double comm = s + 1 < r ? chunk / l.bandwidth + l.latency : 0;
    t.total += std::max(comp, comm);
    t.compute += comp;
    t.comm += comm;
  }
  return t;
}

// Activations alive while one layer runs on T tokens with weights split tp ways (no
// chunked prefill): residual + normed input (2D), q, k, v, attention output, FFN gate and up.
double activations(const Ctx& c, double T, int tp) {
  const double kvh = std::max(c.G, double(tp)) / tp;
  return T * (2 * c.D + (c.H / tp + 2 * kvh) * c.d + c.H / tp * c.d + 2 * c.F / tp) * c.b +
         c.V * 4;  // logits of the last token, f32
}

// Decode of one token: every device streams its weight shard and its KV shard once;
// compute rarely binds on GPUs but does on CPUs.
double decode_time(const Ctx& c, int tp, double kv_bytes, double kv_tokens, double heads) {
  const double mem = (c.W_read / tp + kv_bytes) / c.mem_rate;
  const double flops = (linear_flops(c.m, 1) * c.L + 2 * c.V * c.D) / tp +
                       4.0 * heads * c.d * kv_tokens * c.L;
  return std::max(mem, flops / c.lin_rate);
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

void finish(const Ctx& c, StrategyPlan& s, double compute, double comm, double total) {
  const double lm_head = 2 * c.V * c.D / s.tp / c.lin_rate;  // logits of the last token
  s.compute_seconds = compute + lm_head;
  s.comm_seconds = comm;
  s.prefill_seconds = total + lm_head;
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
  s.layout = "1 device";
  s.weight_bytes = c.W;
  s.kv_bytes = kv_cache_bytes(c, c.N + c.dec, c.G);
  s.activation_bytes = activations(c, c.N, 1);
  const double compute =
      c.L * (linear_flops(c.m, c.N) / c.lin_rate + causal_attention_flops(c.m, c.N) / c.attn_rate);
  s.decode_seconds_per_token = decode_time(c, 1, s.kv_bytes, c.N, c.H);
  finish(c, s, compute, 0, compute);
  s.note = "all work on one device, no communication";
  return s;
}

// Ring attention over all P devices, weights replicated: pass-KV (contiguous or zigzag
// shards) or pass-Q (zigzag shards).
StrategyPlan ring(const Ctx& c, bool zigzag, bool pass_q) {
  StrategyPlan s;
  s.strategy = pass_q ? "pass-q" : zigzag ? "zigzag" : "ring";
  s.ring = c.P;
  s.layout = fmt::format("{} {}", pass_q ? "pass-Q ring" : zigzag ? "zigzag ring" : "ring", c.P);
  const Link& l = c.P > c.K ? c.hw.inter : c.hw.intra;
  const double tok = c.N / c.P;
  const double kv_chunk = tok * 2 * c.G * c.d * c.b, q_chunk = tok * c.H * c.d * c.b;
  const auto rt = ring_time(c, c.P, zigzag || pass_q, c.H, pass_q ? q_chunk : kv_chunk, l);
  double lin = c.L * linear_flops(c.m, tok) / c.lin_rate;
  double total = lin + c.L * rt.total, comm = c.L * rt.comm;
  s.weight_bytes = c.W;
  s.kv_bytes = kv_cache_bytes(c, (c.N + c.dec) / c.P, c.G);
  s.activation_bytes = activations(c, tok, 1) + 2 * (pass_q ? q_chunk : kv_chunk);
  if (pass_q) {  // partial outputs + lse go back to their queries' owners at the end
    const double back = (c.P - 1) * tok * (c.H * c.d * c.b + 4 * c.H);
    const double t = c.L * alltoall(back, c.P, c);
    total += t;
    comm += t;
    s.activation_bytes += back;
    s.bytes_communicated_per_device = c.L * pass_q_bytes(c.m, c.N, c.P, c.b);
  } else {
    s.bytes_communicated_per_device = c.L * ring_kv_bytes(c.m, c.N, c.P, c.b);
  }
  const double merge = c.H * c.d * c.b + 4 * c.H;  // partial output + lse of the new token
  s.decode_seconds_per_token =
      decode_time(c, 1, s.kv_bytes, c.N / c.P, c.H) + c.L * allreduce(merge, c.P, l);
  s.decode_bytes_per_token = c.L * 2.0 * (c.P - 1) / c.P * merge;
  finish(c, s, lin + c.L * rt.compute, comm, total);
  double busiest = 0;  // query-key pairs of the busiest device over the whole ring
  for (double pairs : ring_step_pairs(c.N, c.P, zigzag || pass_q)) busiest += pairs;
  const double imbalance = busiest / (0.5 * c.N * (c.N + 1) / c.P);
  if (pass_q)
    s.note = fmt::format("moves Q ({:.2g}x the K/V bytes); O+lse all-to-all at the end; ",
                         q_chunk / kv_chunk);
  else if (zigzag)
    s.note = "balanced causal work; ";
  else
    s.note = fmt::format("contiguous shards: busiest device does {:.2f}x the mean attention; ",
                         imbalance);
  s.note += comm_phrase(s, pass_q ? "Q transfer" : "K/V transfer");
  return s;
}

StrategyPlan ulysses(const Ctx& c) {
  if (int64_t(c.H) % c.P != 0)
    return not_applicable("ulysses", fmt::format("P = {} does not divide H = {}", c.P, c.H));
  StrategyPlan s;
  s.strategy = "ulysses";
  s.ulysses = c.P;
  s.layout = fmt::format("ulysses {}", c.P);
  const double tok = c.N / c.P, kvh = std::max(c.G, double(c.P)) / c.P;
  const double compute = c.L * (linear_flops(c.m, tok) / c.lin_rate +
                                causal_attention_flops(c.m, c.N) / c.P / c.attn_rate);
  const double bytes = ulysses_bytes(c.m, c.N, c.P, c.b);
  const double comm = c.L * alltoall(bytes, c.P, c);
  s.weight_bytes = c.W;
  s.kv_bytes = kv_cache_bytes(c, c.N + c.dec, kvh);
  s.activation_bytes =
      std::max(activations(c, tok, 1), c.N * (2 * c.H / c.P + 2 * kvh) * c.d * c.b);
  s.bytes_communicated_per_device = c.L * bytes;
  const Link& l = c.P > c.K ? c.hw.inter : c.hw.intra;
  s.decode_seconds_per_token = decode_time(c, 1, s.kv_bytes, c.N, c.H / c.P) +
                               c.L * allgather(c.H * c.d * c.b, c.P, l);
  s.decode_bytes_per_token = c.L * double(c.P - 1) / c.P * c.H * c.d * c.b;
  finish(c, s, compute, comm, compute + comm);
  s.note = "head-sharded attention, all-to-alls not overlapped; " + comm_phrase(s, nullptr);
  return s;
}

// Ulysses over the K devices of a node x zigzag pass-KV ring over the P/K nodes.
StrategyPlan hybrid(const Ctx& c) {
  if (c.P <= c.K) return not_applicable("hybrid", "one node: the same as ulysses");
  const int U = c.K, R = c.P / c.K;
  if (int64_t(c.H) % U != 0)
    return not_applicable("hybrid", fmt::format("K = {} does not divide H = {}", U, c.H));
  StrategyPlan s;
  s.strategy = "hybrid";
  s.ulysses = U;
  s.ring = R;
  s.layout = fmt::format("ulysses {} x zigzag ring {}", U, R);
  const double node_tok = c.N / R, kvh = std::max(c.G, double(U)) / U;
  const double a2a_bytes = ulysses_bytes(c.m, node_tok, U, c.b);
  const double a2a = alltoall(a2a_bytes, U, c);
  const double chunk = node_tok * 2 * kvh * c.d * c.b;
  const auto rt = ring_time(c, R, true, c.H / U, chunk, c.hw.inter);
  const double lin = c.L * linear_flops(c.m, c.N / c.P) / c.lin_rate;
  s.weight_bytes = c.W;
  s.kv_bytes = kv_cache_bytes(c, (c.N + c.dec) / R, kvh);
  s.activation_bytes = std::max(activations(c, c.N / c.P, 1),
                                node_tok * (2 * c.H / U + 2 * kvh) * c.d * c.b) + 2 * chunk;
  s.bytes_communicated_per_device = c.L * (a2a_bytes + (R - 1) * chunk);
  const double heads = c.H / U;
  s.decode_seconds_per_token = decode_time(c, 1, s.kv_bytes, c.N / R, heads) +
                               c.L * (allgather(c.H * c.d * c.b, U, c.hw.intra) +
                                      allreduce(heads * c.d * c.b + 4 * heads, R, c.hw.inter));
  s.decode_bytes_per_token = c.L * (double(U - 1) / U * c.H * c.d * c.b +
                                    2.0 * (R - 1) / R * (heads * c.d * c.b + 4 * heads));
  finish(c, s, lin + c.L * rt.compute, c.L * (a2a + rt.comm), lin + c.L * (a2a + rt.total));
  s.note = "all-to-all inside nodes, balanced K/V ring across; " + comm_phrase(s, "ring K/V transfer");
  return s;
}

// Tensor parallelism over the K devices of a node x zigzag pass-KV ring over the nodes.
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
  const double lin = c.L * linear_flops(c.m, tok) / tp / c.lin_rate;
  const double ar = c.L * 2 * allreduce(tok * c.D * c.b, tp, c.hw.intra);
  const double chunk = tok * 2 * kvh * c.d * c.b;
  const auto rt = ring_time(c, cp, true, heads, chunk, c.hw.inter);
  s.weight_bytes = c.W / tp;
  s.kv_bytes = kv_cache_bytes(c, (c.N + c.dec) / cp, kvh);
  s.activation_bytes = activations(c, tok, tp) + (cp > 1 ? 2 * chunk : 0);
  s.bytes_communicated_per_device =
      c.L * (tp_allreduce_bytes(c.m, tok, tp, c.b) + (cp - 1) * chunk);
  s.decode_seconds_per_token = decode_time(c, tp, s.kv_bytes, c.N / cp, heads) +
                               c.L * (2 * allreduce(c.D * c.b, tp, c.hw.intra) +
                                      allreduce(heads * c.d * c.b + 4 * heads, cp, c.hw.inter));
  s.decode_bytes_per_token = c.L * (2 * 2.0 * (tp - 1) / tp * c.D * c.b +
                                    2.0 * (cp - 1) / cp * (heads * c.d * c.b + 4 * heads));
  finish(c, s, lin + c.L * rt.compute, ar + c.L * rt.comm, lin + ar + c.L * rt.total);
  s.note = fmt::format("weights split {} ways; ", tp);
  if (cp > 1) {
    const double ring_exposed = c.L * (rt.total - rt.compute);
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

Plan make_plan(PlanRequest req) {
  if (req.tokens <= 0) bad_input("--tokens {} must be > 0", req.tokens);
  if (req.tokens > (int64_t{1} << 40)) bad_input("--tokens {} is too large", req.tokens);
  if (req.gpus < 1) bad_input("--gpus {} must be >= 1", req.gpus);
  if (req.gpus_per_node < 1) bad_input("--gpus-per-node {} must be >= 1", req.gpus_per_node);
  if (req.gpus > req.gpus_per_node && req.gpus % req.gpus_per_node != 0)
    bad_input("--gpus {} is not a multiple of --gpus-per-node {}", req.gpus, req.gpus_per_node);
  if (req.decode_tokens < 0) bad_input("--decode-tokens {} must be >= 0", req.decode_tokens);
  req.model.validate("--model " + req.model.name);
  req.hw.validate("--hardware " + req.hw.name);
  if (req.dtype != "auto" && weight_bytes_per_param(req.dtype) == 0)
    bad_input("--dtype '{}' is not one of bf16, fp16, fp8, f32, q8_0, q4_0, auto", req.dtype);
  Plan plan;
  plan.dtype_reason = resolve_dtype(req);
  const auto& m = req.model;
  const int K = std::min(req.gpus, req.gpus_per_node);
  const int b = req.dtype == "f32" ? 4 : req.hw.activation_bytes;
  Ctx c{m, req.hw, double(req.tokens), double(req.decode_tokens), req.gpus, K, b,
        double(m.n_layer), double(m.n_embd), double(m.n_head), double(m.n_head_kv),
        double(m.head_dim), double(m.n_ff), double(m.n_vocab),
        double(m.params()) * weight_bytes_per_param(req.dtype),
        double(m.params() - (m.tied_output ? 0 : m.n_vocab * m.n_embd)) *
            weight_bytes_per_param(req.dtype),
        req.hw.flops_for(req.dtype) * req.hw.efficiency,
        req.hw.flops_for(b >= 4 ? "f32" : req.hw.attention_dtype()) * req.hw.efficiency,
        req.hw.memory_bandwidth * req.hw.memory_efficiency};
  plan.flops = c.L * (linear_flops(m, c.N) + causal_attention_flops(m, c.N)) + 2 * c.V * c.D;
  auto& v = plan.strategies;
  v.push_back(single(c));
  if (req.gpus > 1) {
    v.push_back(ring(c, false, false));
    v.push_back(ring(c, true, false));
    v.push_back(ring(c, true, true));
    v.push_back(ulysses(c));
  } else {
    for (const char* n : {"ring", "zigzag", "pass-q", "ulysses"})
      v.push_back(not_applicable(n, "needs --gpus >= 2"));
  }
  v.push_back(req.gpus > 1 ? hybrid(c) : not_applicable("hybrid", "needs --gpus >= 2"));
  v.push_back(req.gpus > 1 ? tp_ring(c) : not_applicable("tp+ring", "needs --gpus >= 2"));
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

}  // namespace tandem::analysis
