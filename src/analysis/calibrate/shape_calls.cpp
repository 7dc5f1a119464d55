// `tandem calibrate --model`: one model shape's own calls, as the runtime runs them: its
// four products per layer (fused as the execution graph fuses them), its output head and
// its attention at its head dim and group (ProfileCurves::shape_matmul, shape_attention).
// Given a model file, the products are timed inside its own forward pass, and the
// attention grid (timed alone, over more sizes than a pass could visit quickly) is
// scaled to what its calls take inside a pass.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <tuple>

#include "analysis/measure.hpp"
#include "tandem/analysis/calibrate.hpp"
#include "tandem/analysis/planner.hpp"
#include "tandem/graph/executor.hpp"
#include "tandem/kernels/fused.hpp"
#include "tandem/runtime/engine.hpp"
#include "tandem/runtime/weight_layout.hpp"

namespace tandem::analysis {
namespace {

// The most FLOPs one timed call may take (about 0.05-0.1 s here). A larger point takes
// the value of the point before it on the tokens (queries) axis: the rates have levelled
// off by then, and the profile stays quick to make for large models.
constexpr double kMaxCallFlops = 1.2e10;
// Decode steps timed at the deepest depth (the first untimed).
constexpr int kDecodeSteps = 6;
constexpr int64_t kInPassChunk = 512;  // the in-pass attention's chunk (below)
// Rounds of the in-pass timings (each a step of every token count, or a chunk at a depth).
constexpr int kRounds = 5;

// FLOP/s over threads x tokens of one product: outputs of `rows` rows each over `cols`
// inputs, Qkv (RMSNorm folded in, rope on the first two outputs), GateUp (RMSNorm and
// SwiGLU folded in) or Plain.
Curve product_curve(DType type, MatKind kind, const std::vector<int64_t>& rows, int64_t cols,
                    int head_dim, const std::vector<double>& threads,
                    const std::vector<double>& tokens, CoreProbe& probe) {
  Curve c = Curve::grid({"threads", "tokens"}, {threads, tokens});
  std::vector<Weights> w;
  int64_t all_rows = 0;
  for (int64_t r : rows) w.push_back(make_weights(type, r, cols)), all_rows += r;
  const auto m_max = int64_t(tokens.back());
  const auto x = random_floats(size_t(m_max * cols), 3);
  const auto norm = random_floats(size_t(cols), 4);
  std::vector<std::vector<float>> y;
  for (int64_t r : rows) y.emplace_back(size_t(m_max * r));
  std::vector<int32_t> pos(static_cast<size_t>(m_max));
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  kernels::RopeSpec rs;
  rs.n_rot = head_dim;
  kernels::RopeTable rope;
  rope.build(pos.data(), m_max, rs);
  // One fused spec per copy of the weights, as the graph holds one per layer.
  const size_t copies = w.front().views.size();
  std::vector<kernels::FusedMatmul> f(copies);
  for (size_t i = 0; i < copies; ++i) {
    for (size_t o = 0; o < rows.size(); ++o) {
      kernels::MatmulOut out;
      out.w = w[o].views[i % w[o].views.size()];
      out.y = y[o].data();
      out.rope_d = kind == MatKind::Qkv && o < 2 ? head_dim : 0;
      f[i].outs.push_back(out);
    }
    if (kind != MatKind::Plain) f[i].norm_w = norm.data(), f[i].eps = 1e-5f;
    if (kind == MatKind::Qkv) f[i].rope = &rope;
    if (kind == MatKind::GateUp) f[i].glu = true, f[i].outs[1].y = nullptr;
  }
  for (size_t t = 0; t < threads.size(); ++t) {
    const PinFirst pin(int(threads[t]));
    kernels::ThreadPool pool(int(threads[t]));
    for (size_t m = 0; m < tokens.size(); ++m) {
      const double flops = 2 * tokens[m] * double(all_rows) * double(cols);
      if (m > 0 && flops > kMaxCallFlops) {
        c.values[c.index({t, m})] = c.values[c.index({t, m - 1})];
        continue;
      }
      const auto n = int64_t(tokens[m]);
      for (auto& spec : f) kernels::plan_matmul(spec, n, int(threads[t]), spec.plan);
      const double pace = probe.pace(tokens[m] <= 1 ? CoreWork::Stream : CoreWork::Product, int(threads[t]));
      const double s = time_call([&](int i) {
        kernels::matmul_fused(f[size_t(i) % f.size()], x.data(), 0, n, pool);
      }, 0.006);
      c.values[c.index({t, m})] = flops / s / pace;
    }
  }
  return c;
}

// FLOP/s of the shape's attention over threads x queries x keys x heads per call
// (attention_rate's calls at its head dim and group).
Curve shape_attention_curve(const ModelShape& s, const std::vector<double>& threads, CoreProbe& probe) {
  const std::vector<double> queries = {1, 16, 128, 512, 2048}, keys = {64, 256, 1024, 4096, 8192, 16384};
  const int group = int(s.n_head / s.n_head_kv), d = int(s.head_dim);
  std::vector<double> heads;
  for (int64_t h : {(s.n_head + 3) / 4, (s.n_head + 1) / 2, s.n_head}) {
    // Whole KV heads per call (a Ulysses rank's share), at least one.
    const double whole = double(std::max<int64_t>(1, h / group) * group);
    if (heads.empty() || whole > heads.back()) heads.push_back(whole);
  }
  Curve c = Curve::grid({"threads", "queries", "keys", "heads"}, {threads, queries, keys, heads});
  // Two passes over the grid, each point's rate over the cores' pace as it was timed
  // (CoreProbe): a point keeps the pass whose cores ran faster (the faster rate where
  // their paces are within 15%), so that a burst of other work on this shared host
  // during one point's few calls (it slowed a point 1.7x here) does not stay in it.
  std::vector<double> paces(c.values.size(), 0.0);
  for (int pass = 0; pass < 2; ++pass)
    for (size_t t = 0; t < threads.size(); ++t) {
      const PinFirst pin(int(threads[t]));
      kernels::ThreadPool pool(int(threads[t]));
      for (size_t k = 0; k < keys.size(); ++k) {
        const double pace = probe.pace(CoreWork::Attention, int(threads[t]));
        for (size_t hi = 0; hi < heads.size(); ++hi)
          for (size_t q = 0; q < queries.size(); ++q) {
            const size_t at = c.index({t, q, k, hi});
            double& v = c.values[at];
            const double flops = 4.0 * d * heads[hi] * queries[q] * keys[k];
            if (q > 0 && flops > kMaxCallFlops) {
              v = c.values[c.index({t, q - 1, k, hi})];
              continue;
            }
            const int H = int(heads[hi]);
            const double r = attention_rate(pool, H, H / group, d, int64_t(queries[q]), keys[k], 0.006) / pace;
            if (pace > 1.15 * paces[at] || (pace > paces[at] / 1.15 && r > v)) v = r;
            paces[at] = std::max(paces[at], pace);
          }
      }
    }
  return c;
}

// Each node's time in the passes it watches: the products by shape key and rows, the
// attention calls in order.
class PassTimer final : public graph::OpTimer {
 public:
  struct Product {
    std::string key;     // shape_matmul_key
    double rows = 0, cols = 0;  // of the whole call
    std::vector<double> seconds;
  };
  std::map<std::pair<std::string, int64_t>, Product> products;  // by key and rows computed
  std::vector<double> attention;
  void add(const graph::Node& n, int64_t rows, double seconds) override {
    if (n.kind == graph::OpKind::Attention) {
      attention.push_back(seconds);
      return;
    }
    if (n.kind != graph::OpKind::MatMul || n.mats.empty()) return;
    int64_t all = 0;
    bool rope = false;
    for (const graph::MatSpec& m : n.mats) all += m.w.rows, rope |= m.rope;
    const MatKind kind = n.glu ? MatKind::GateUp : rope ? MatKind::Qkv : MatKind::Plain;
    const std::string key = shape_matmul_key(std::string(dtype_name(n.mats[0].w.type)), kind,
                                             double(all), double(n.mats[0].w.cols));
    Product& p = products[{key, rows}];
    p.key = key, p.rows = double(all), p.cols = double(n.mats[0].w.cols);
    p.seconds.push_back(seconds);
  }
};

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
  return v[v.size() / 2];
}

std::vector<int32_t> some_ids(int64_t n, int64_t vocab) {
  std::mt19937 rng(17);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& x : ids) x = int32_t(rng() % uint32_t(vocab));
  return ids;
}

// The engine's cache paged as a single rank's is (kDefaultKvPage).
void page_cache(Engine& e) {
  EngineOptions eo = e.options();
  eo.kv.page_tokens = 256;
  e.set_options(eo);
}

// Runs `ids` through the engine at positions 0.. onto a fresh cache.
void forward(Engine& e, std::span<const int32_t> ids) {
  KVCache cache = e.make_cache(int64_t(ids.size()));
  std::vector<int32_t> pos(ids.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  std::vector<float> logits(size_t(e.model().hparams().n_vocab));
  e.forward(cache, ids, pos, 1, logits.data());
}

// A chunk of `chunk` tokens after `depth` tokens whose K/V rows are written straight into
// `cache` (the kernel's time does not depend on the values): the cache's rows, the chunk's
// ids and their positions (depth .. depth + chunk - 1).
struct DeepChunk {
  std::vector<int32_t> ids, pos;
  std::span<const int32_t> at() const { return {pos.data() + (pos.size() - ids.size()), ids.size()}; }
};
DeepChunk fill_deep(KVCache& cache, const ModelShape& s, int64_t depth, int64_t chunk) {
  DeepChunk c{some_ids(chunk, s.n_vocab), std::vector<int32_t>(size_t(depth + chunk))};
  for (size_t i = 0; i < c.pos.size(); ++i) c.pos[i] = int32_t(i);
  if (depth > 0) {
    const auto rows = random_floats(size_t(depth * s.n_head_kv * s.head_dim), 9);
    const int64_t slot = cache.append(depth, c.pos.data());
    for (int64_t l = 0; l < s.n_layer; ++l) cache.write(l, slot, depth, rows.data(), rows.data());
  }
  return c;
}

// The faster of two timed steps of `ids` at positions `at`, each after the cache is cut
// back to its first `keep` rows: the attention nodes' mean time per layer.
double fastest_attention(Engine& e, KVCache& cache, int64_t keep, std::span<const int32_t> ids,
                         std::span<const int32_t> at, float* logits) {
  double best = 0;
  for (int round = 0; round < 2; ++round) {
    cache.truncate(keep);
    PassTimer timer;
    e.set_op_timer(&timer);
    e.forward(cache, ids, at, 1, logits);
    e.set_op_timer(nullptr);
    double sum = 0;
    for (double x : timer.attention) sum += x;
    sum /= double(timer.attention.size());
    if (round == 0 || sum < best) best = sum;
  }
  return best;
}

// The fastest of kDecodeSteps - 1 decode steps after the `tokens` rows `cache` holds (one
// more before them, untimed: it builds the one-token graph); the cache is cut back after.
double fastest_decode_step(Engine& e, KVCache& cache, int64_t tokens, const std::vector<int32_t>& ids) {
  std::vector<float> logits(size_t(e.model().hparams().n_vocab));
  std::vector<double> steps;
  for (int i = 0; i < kDecodeSteps; ++i) {
    const int32_t id = ids[size_t(i) % ids.size()], p = int32_t(tokens + i);
    const Stopwatch sw;
    e.forward(cache, std::span<const int32_t>(&id, 1), std::span<const int32_t>(&p, 1), 1, logits.data());
    if (i > 0) steps.push_back(sw.seconds());
  }
  cache.truncate(tokens);
  return *std::min_element(steps.begin(), steps.end());
}

// The products of the model as its forward pass runs them, FLOP/s over threads x tokens
// per step (steps of each token count, one untimed, then kRounds rounds, each the median
// call over the layers of a step run right after another of its size, times the cores'
// pace around it: the median of the rounds on the fastest cores),
// into h.curves.shape_matmul; then each thread count's attention grid scaled,
// keys by keys, by the time its calls take inside a pass (a 512-token chunk whose
// queries see the grid's keys on average, and one query after it) over the time the grid
// gives them.
//
// At the deepest depth on the most threads, decode steps too, before the rounds and again
// after the in-pass chunks (half a minute or more apart: a slow spell of a shared host
// lasts seconds to a minute): the faster step's time against what the bandwidth curve
// gives the bytes each reads (decode_read_bytes: the weights and the cache, far past the
// last-level cache there) sets `read_efficiency` (left as it is without a bandwidth curve).
void measure_in_pass(std::map<std::string, Curve>& products, const std::string& path, const ModelShape& s,
                     const std::string& dtype, const std::vector<double>& threads,
                     const std::vector<double>& tokens, Curve& attention, CoreProbe& probe,
                     const Curve& bandwidth, double& read_efficiency,
                     const std::function<void(const std::string&)>& progress) {
  const std::unique_ptr<Model> model = load_model(path);
  const double flops_per_token = 2.0 * double(s.layer_matmul_params()) * double(s.n_layer);
  std::map<std::string, Curve> curves;
  // Per thread count: its pool (made on its cores), one engine per token count (its graph
  // built and run once untimed) and the calls timed in each round.
  struct Timed {
    PassTimer::Product call;
    std::vector<std::pair<double, double>> rounds;  // seconds, pace
  };
  struct ThreadCount {
    std::unique_ptr<kernels::ThreadPool> pool;
    std::vector<size_t> measured;
    std::vector<std::unique_ptr<Engine>> engines;
    std::vector<std::vector<int32_t>> ids;
    // By key, rows computed and token count: the call's shape, and per round its seconds
    // and the cores' pace around it (CoreProbe).
    std::map<std::tuple<std::string, int64_t, size_t>, Timed> timed_calls;
  };
  std::vector<ThreadCount> counts(threads.size());
  for (size_t t = 0; t < threads.size(); ++t) {
    const PinFirst pin(int(threads[t]));
    ThreadCount& tc = counts[t];
    tc.pool = std::make_unique<kernels::ThreadPool>(int(threads[t]));
    for (size_t m = 0; m < tokens.size(); ++m) {
      if (m > 0 && flops_per_token * tokens[m] > kMaxCallFlops) continue;
      const auto n = int64_t(tokens[m]);
      tc.measured.push_back(m);
      tc.engines.push_back(std::make_unique<Engine>(*model, *tc.pool, n));
      page_cache(*tc.engines.back());
      tc.ids.push_back(some_ids(n, s.n_vocab));
      forward(*tc.engines.back(), tc.ids.back());
    }
  }
  // The decode steps' first timing (see above), on the most threads.
  const int64_t deepest = int64_t(attention.points[2].back()) - kInPassChunk / 2;  // axes: threads, queries, keys, heads
  double first_step = 0;
  if (!bandwidth.empty()) {
    const PinFirst pin(int(threads.back()));
    Engine e(*model, *counts.back().pool, kInPassChunk);
    page_cache(e);
    KVCache cache = e.make_cache(deepest + kInPassChunk + kDecodeSteps);
    const DeepChunk c = fill_deep(cache, s, deepest, kInPassChunk);
    std::vector<float> logits(size_t(s.n_vocab));
    e.forward(cache, c.ids, c.at(), 1, logits.data());
    first_step = fastest_decode_step(e, cache, deepest + kInPassChunk, c.ids);
  }
  // Rounds over the thread counts and, within each, the token counts: a burst of other
  // work on a shared machine, or a spell in which its cores run slower together than the
  // probe (one core at a time) reads them, falls on one round, not on one count; the
  // rounds of one thread count lie the other counts' time apart.
  for (int round = 0; round < kRounds; ++round)
    for (size_t t = 0; t < threads.size(); ++t) {
      const PinFirst pin(int(threads[t]));
      ThreadCount& tc = counts[t];
      for (size_t i = 0; i < tc.measured.size(); ++i) {
        // Two steps back to back, the second timed: as the runtime runs a prefill's chunks
        // and decode's steps, each after one like it (its weights where it left them; the
        // probe, which streams weights of its own, goes before both).
        const CoreWork kind = tokens[tc.measured[i]] <= 1 ? CoreWork::Stream : CoreWork::Product;
        const double before = probe.pace(kind, int(threads[t]));
        forward(*tc.engines[i], tc.ids[i]);
        PassTimer timer;
        tc.engines[i]->set_op_timer(&timer);
        forward(*tc.engines[i], tc.ids[i]);
        tc.engines[i]->set_op_timer(nullptr);
        const double pace = (before + probe.pace(kind, int(threads[t]))) / 2;
        for (const auto& [at, p] : timer.products) {
          Timed& tm = tc.timed_calls[std::make_tuple(at.first, at.second, tc.measured[i])];
          tm.call = p;
          tm.rounds.emplace_back(median(p.seconds), pace);
        }
      }
    }
  for (size_t t = 0; t < threads.size(); ++t) {
    const PinFirst pin(int(threads[t]));
    kernels::ThreadPool& pool = *counts[t].pool;
    for (const auto& [k, timed] : counts[t].timed_calls) {
      const auto& [key, rows, m] = k;
      const PassTimer::Product& call = timed.call;
      // Seconds times the pace, the median of the rounds whose cores ran within 15% of the
      // fastest round's: a round on a core another tenant slowed is left out, and the
      // rest are put on one footing.
      double top = 0;
      for (const auto& r : timed.rounds) top = std::max(top, r.second);
      std::vector<double> kept;
      for (const auto& [sec, pace] : timed.rounds)
        if (pace >= top / 1.15) kept.push_back(sec * pace);
      const double secs = median(kept);
      const double rows_all = call.rows, cols = call.cols;
      // The output head runs on the last row only: one point, at one token, from the
      // one-token steps (decode's; their pace is the stream probe's).
      const bool head = std::llround(rows_all) == s.n_vocab;
      if (head ? rows != 1 || tokens[m] > 1 : rows != int64_t(tokens[m])) continue;
      auto it = curves.find(key);
      if (it == curves.end())
        it = curves.emplace(key, Curve::grid({"threads", "tokens"},
                                             {threads, head ? std::vector<double>{1} : tokens}))
                 .first;
      it->second.values[it->second.index({t, head ? size_t(0) : m})] =
          2 * double(rows) * rows_all * cols / secs;
    }
    // Token counts left out take the rate of the count before them.
    for (auto& [key, c] : curves)
      for (size_t m = 1; m < c.points[1].size(); ++m)
        if (!(c.values[c.index({t, m})] > 0)) c.values[c.index({t, m})] = c.values[c.index({t, m - 1})];
    // Attention inside a pass against the grid: one 512-token chunk after `depth` tokens
    // (their K/V rows written straight into the cache: the kernel's time does not depend
    // on the values), untimed once, then timed, at the depths whose chunk sees the grid's
    // own keys on average (depth + 256: a ratio read between two depths would smear the
    // drop where K and V outgrow the cache over the keys around it).
    const int64_t chunk = kInPassChunk;
    const double d = double(s.head_dim), H = double(s.n_head);
    std::vector<int64_t> depths;
    for (const double k : attention.points[2])  // axes: threads, queries, keys, heads
      if (k >= double(chunk / 2)) depths.push_back(int64_t(k) - chunk / 2);
    // What the grid gives a call of `queries` (every head) seeing `pairs` keys in all.
    auto grid_seconds = [&](double queries, double pairs) {
      return 4 * d * H * pairs /
             attention.at({{"threads", threads[t]}, {"queries", queries}, {"keys", pairs / queries}, {"heads", H}});
    };
    std::vector<double> keys, slower, one_keys, one_slower;
    for (const int64_t depth : depths) {
      Engine e(*model, pool, chunk);
      page_cache(e);
      const bool decode = t + 1 == threads.size() && depth == deepest && !bandwidth.empty();
      KVCache cache = e.make_cache(depth + chunk + kDecodeSteps);
      const DeepChunk c = fill_deep(cache, s, depth, chunk);
      const auto& chunk_ids = c.ids;
      std::vector<float> logits(size_t(s.n_vocab));
      const std::span<const int32_t> at = c.at();
      const double before = probe.pace(CoreWork::Attention, int(threads[t]));  // (before the untimed chunk)
      e.forward(cache, chunk_ids, at, 1, logits.data());
      double in_pass = fastest_attention(e, cache, depth, chunk_ids, at, logits.data());
      in_pass *= (before + probe.pace(CoreWork::Attention, int(threads[t]))) / 2;  // x the cores' pace, as the grid
      const double q = double(chunk), pairs = q * double(depth) + q * (q + 1) / 2;
      keys.push_back(pairs / q);
      slower.push_back(in_pass / grid_seconds(q, pairs));
      // One query after the chunk, as a decode step runs it: the step untimed once (it
      // builds the one-token graph), then the faster of two timed, per layer, against the
      // grid's one-query calls over as many keys.
      {
        const int32_t id = chunk_ids[0], p = int32_t(depth + chunk);
        const std::span<const int32_t> one_id(&id, 1), one_at(&p, 1);
        const double start = probe.pace(CoreWork::Attention, int(threads[t]));
        e.forward(cache, one_id, one_at, 1, logits.data());
        double one = fastest_attention(e, cache, depth + chunk, one_id, one_at, logits.data());
        cache.truncate(depth + chunk);
        one *= (start + probe.pace(CoreWork::Attention, int(threads[t]))) / 2;
        const double seen = double(depth + chunk + 1);
        one_keys.push_back(seen);
        one_slower.push_back(one / grid_seconds(1, seen));
      }
      if (decode) {
        // The faster of the two timings, as the curve holds the fastest of its passes.
        const double last_step = fastest_decode_step(e, cache, depth + chunk, c.ids);
        const double step = std::min(first_step, last_step);
        const double bytes = decode_read_bytes(s, dtype, double(depth + chunk), 4);
        const double floor = bytes / bandwidth.at({{"threads", threads[t]}, {"bytes", bytes}});
        read_efficiency = std::clamp(floor / step, 0.25, 1.0);
        if (progress)
          progress(fmt::format("decode step at {} keys: {:.2f} ms (before the rounds {:.2f}, after {:.2f}), {:.0f}% "
                               "of the bandwidth curve's rate for its {:.0f} MB ({} threads)",
                               depth + chunk, 1e3 * step, 1e3 * first_step, 1e3 * last_step, 100 * floor / step,
                               bytes / 1e6, threads[t]));
      }
    }
    if (progress) {
      std::string r, r1;
      for (size_t i = 0; i < keys.size(); ++i) r += fmt::format(" {:.0f}:{:.2f}", keys[i], slower[i]);
      for (size_t i = 0; i < one_keys.size(); ++i) r1 += fmt::format(" {:.0f}:{:.2f}", one_keys[i], one_slower[i]);
      progress(fmt::format("attention inside a pass over alone, by keys ({} threads):{}; one query:{}", threads[t], r,
                           r1));
    }
    // Each grid point's rate over the ratio at its keys (held below the shortest timed):
    // the chunks' ratio for calls of more than one query (their K/V rows read once per
    // tile of queries), the one-query calls' own for a decode's (every row read once for
    // its one query; inside a pass the cache a step reads can sit partly in the
    // last-level cache, where the grid's calls rotate through copies that do not).
    Curve ratio = Curve::grid({"keys"}, {keys}), one_ratio = Curve::grid({"keys"}, {one_keys});
    ratio.values = slower;
    one_ratio.values = one_slower;
    const size_t per_thread = attention.values.size() / threads.size();
    const auto& qp = attention.points[1], &kp = attention.points[2];  // axes: threads, queries, keys, heads
    const size_t nh = attention.points[3].size();
    for (size_t i = 0; i < per_thread; ++i) {
      const double k = kp[(i / nh) % kp.size()];
      attention.values[t * per_thread + i] /=
          qp[i / (nh * kp.size())] > 1 ? ratio.at({{"keys", k}}) : one_ratio.at({{"keys", k}});
    }
  }
  for (auto& [key, c] : curves) {
    for (double v : c.values)
      if (!(v > 0)) fail(ErrorKind::Internal, "calibrate --model {}: product {} was not timed", path, key);
    products[key] = std::move(c);
  }
}

}  // namespace

void calibrate_model_shape(HardwareProfile& h, const ModelShape& s, const std::string& dtype,
                           const std::string& path, const CalibrateOptions& o) {
  s.validate("calibrate --model");
  const auto type = parse_dtype(dtype == "fp16" ? "f16" : dtype);  // the planner spells f16 fp16
  if (!type || !info(*type).matrix)
    bad_input("calibrate --model: weight type '{}' has no matrix kernels", dtype);
  const auto threads = thread_points(o.threads);
  const std::vector<double> tokens = {1, 16, 64, 256, 512, 2048};
  const int d = int(s.head_dim);
  const int64_t D = s.n_embd, Q = s.n_head * s.head_dim, K = s.n_head_kv * s.head_dim, F = s.n_ff;
  // Every rate below is timed over the cores' pace at that moment (CoreProbe), then held
  // at the profile's core rate: the node's, where it has one, else the uncontended rate
  // seen here.
  CoreProbe probe(o.threads);
  if (o.progress) o.progress(core_rates_line(probe));
  std::map<std::string, Curve> products;
  auto add = [&](MatKind kind, const std::vector<int64_t>& rows, int64_t cols,
                 const std::vector<double>& at) {
    int64_t all = 0;
    for (int64_t r : rows) all += r;
    products[shape_matmul_key(dtype, kind, double(all), double(cols))] =
        product_curve(*type, kind, rows, cols, d, threads, at, probe);
  };
  Curve attention = shape_attention_curve(s, threads, probe);
  if (!path.empty()) {
    measure_in_pass(products, path, s, dtype, threads, tokens, attention, probe, h.curves.bandwidth,
                    h.memory_efficiency, o.progress);
  } else {
    add(MatKind::Qkv, {Q, K, K}, D, tokens);
    add(MatKind::Plain, {D}, Q, tokens);
    add(MatKind::GateUp, {F, F}, D, tokens);
    add(MatKind::Plain, {D}, F, tokens);
    add(MatKind::Plain, {s.n_vocab}, D, {1});  // the output head, for the last token
  }
  if (probe.active()) {
    // The node's held rates where it has them (its curves are held there too).
    const CoreRates seen = uncontended_rates(probe);
    for (const CoreWork w : {CoreWork::Product, CoreWork::Attention, CoreWork::Stream})
      if (!(h.core_rate.of(w) > 0)) h.core_rate.of(w) = seen.of(w);
    for (auto& [key, c] : products) hold_at(c, h.core_rate, CoreWork::Product);
    hold_at(attention, h.core_rate, CoreWork::Attention);
  }
  for (auto& [key, c] : products) h.curves.shape_matmul[key] = std::move(c);
  h.curves.shape_attention[shape_attention_key(double(d), double(s.n_head / s.n_head_kv))] =
      std::move(attention);
  if (o.progress) {
    const Curve& qkv = h.curves.shape_matmul.at(shape_matmul_key(dtype, MatKind::Qkv, double(Q + 2 * K), double(D)));
    const Curve& att = h.curves.shape_attention.at(shape_attention_key(double(d), double(s.n_head / s.n_head_kv)));
    o.progress(fmt::format("model {} ({}): Q/K/V {:.1f} GFLOP/s at 512 tokens, attention {:.1f} at "
                           "512 queries x 4096 keys ({} threads)",
                           s.name, dtype, qkv.at({{"threads", threads.back()}, {"tokens", 512}}) / 1e9,
                           att.at({{"threads", threads.back()}, {"queries", 512}, {"keys", 4096},
                                   {"heads", double(s.n_head)}}) / 1e9,
                           threads.back()));
  }
}

}  // namespace tandem::analysis
