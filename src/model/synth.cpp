// Synthetic models: the reproducible generator of shared/models/README.md (FNV-1a key,
// SplitMix64 stream, Box-Muller in double precision) and a GGUF writer for it.
#include "tandem/model/synth.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numbers>
#include <string_view>
#include <thread>

#include "tandem/core/error.hpp"
#include "tandem/core/quant_rows.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/quant_recipe.hpp"
#include "tandem/model/hparams.hpp"

namespace tandem {
namespace {

constexpr double kStd = 0.02;

inline uint64_t splitmix(uint64_t key, uint64_t n) {
  uint64_t z = key + n * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Writes elements [2*j0, 2*j1) of the stream (clipped to n).
void fill_pairs(uint64_t key, float* out, int64_t n, int64_t j0, int64_t j1) {
  constexpr double kTwoPow53 = 1.0 / 9007199254740992.0;  // 2^-53
  for (int64_t j = j0; j < j1; ++j) {
    const uint64_t r1 = splitmix(key, uint64_t(2 * j + 1));
    const uint64_t r2 = splitmix(key, uint64_t(2 * j + 2));
    const double u1 = double((r1 >> 11) + 1) * kTwoPow53;
    const double u2 = double(r2 >> 11) * kTwoPow53;
    const double rad = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * std::numbers::pi * u2;
    const double scaled = kStd * rad;
    out[2 * j] = float(scaled * std::cos(theta));
    if (2 * j + 1 < n) out[2 * j + 1] = float(scaled * std::sin(theta));
  }
}

int worker_count(int64_t work) {
  if (work < (int64_t{1} << 15)) return 1;
  const unsigned hw = std::thread::hardware_concurrency();
  return int(std::clamp<unsigned>(hw, 1, 8));
}

// Runs fn(begin, end) over [0, n) split into contiguous parts, one per worker.
template <typename Fn>
void parallel_ranges(int64_t n, int64_t cost_per_item, Fn fn) {
  const int workers = int(std::min<int64_t>(worker_count(n * cost_per_item), n));
  if (workers <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> threads;
  const int64_t chunk = (n + workers - 1) / workers;
  for (int w = 1; w < workers; ++w) {
    const int64_t b = std::min(n, w * chunk), e = std::min(n, (w + 1) * chunk);
    threads.emplace_back([=] { fn(b, e); });
  }
  fn(int64_t{0}, std::min(n, chunk));
  for (auto& t : threads) t.join();
}

bool same_shape(const SynthSpec& a, const SynthSpec& b) {
  return a.n_embd == b.n_embd && a.n_layer == b.n_layer && a.n_head == b.n_head &&
         a.n_head_kv == b.n_head_kv && a.n_ff == b.n_ff;
}

std::string model_name(const SynthSpec& s) {
  for (const char* preset : {"tiny", "small"})
    if (same_shape(s, synth_preset(preset))) return "synthetic-" + s.arch + "-" + preset;
  return "synthetic-" + s.arch;
}

struct TensorPlan {
  std::string name;
  int64_t rows = 0;  // 1 for vectors
  int64_t cols = 0;
  enum Kind { Matrix, Ones, Bias, RopeFreqs } kind = Matrix;
};

// The architecture's traits (what its converter writes).
HParams traits_of(const SynthSpec& s) {
  HParams h;
  h.n_layer = s.n_layer;
  h.set_arch(s.arch, "synthetic model");
  return h;
}

int64_t head_dim_of(const SynthSpec& s) { return s.head_dim > 0 ? s.head_dim : s.n_embd / s.n_head; }

// Tensor order of the reference files: output, output_norm, token_embd, then each
// block's tensors sorted by name.
std::vector<TensorPlan> plan_tensors(const SynthSpec& s) {
  const HParams t = traits_of(s);
  const int64_t D = s.n_embd, F = s.n_ff, V = s.n_vocab, d = head_dim_of(s);
  const int64_t Q = s.n_head * d, K = s.n_head_kv * d;
  std::vector<TensorPlan> out;
  if (!s.tied_output && !t.tied_embedding) out.push_back({"output.weight", V, D, TensorPlan::Matrix});
  out.push_back({"output_norm.weight", 1, D, TensorPlan::Ones});
  out.push_back({"token_embd.weight", V, D, TensorPlan::Matrix});
  if (s.rope_scaling == "llama3") out.push_back({"rope_freqs.weight", 1, d / 2, TensorPlan::RopeFreqs});
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    std::vector<TensorPlan> blk = {
        {p + "attn_norm.weight", 1, D, TensorPlan::Ones},
        {p + "attn_output.weight", D, Q, TensorPlan::Matrix},
        {p + "ffn_norm.weight", 1, D, TensorPlan::Ones},
        {p + "ffn_down.weight", D, F, TensorPlan::Matrix},
    };
    if (t.fused_layout) {
      blk.push_back({p + "attn_qkv.weight", Q + 2 * K, D, TensorPlan::Matrix});
      blk.push_back({p + "ffn_up.weight", 2 * F, D, TensorPlan::Matrix});
    } else {
      blk.push_back({p + "attn_q.weight", Q, D, TensorPlan::Matrix});
      blk.push_back({p + "attn_k.weight", K, D, TensorPlan::Matrix});
      blk.push_back({p + "attn_v.weight", K, D, TensorPlan::Matrix});
      blk.push_back({p + "ffn_gate.weight", F, D, TensorPlan::Matrix});
      blk.push_back({p + "ffn_up.weight", F, D, TensorPlan::Matrix});
    }
    if (s.qkv_bias) {
      blk.push_back({p + "attn_q.bias", 1, Q, TensorPlan::Bias});
      blk.push_back({p + "attn_k.bias", 1, K, TensorPlan::Bias});
      blk.push_back({p + "attn_v.bias", 1, K, TensorPlan::Bias});
    }
    if (t.qk_norm) {
      blk.push_back({p + "attn_q_norm.weight", 1, d, TensorPlan::Ones});
      blk.push_back({p + "attn_k_norm.weight", 1, d, TensorPlan::Ones});
    }
    if (t.post_norms) {
      blk.push_back({p + "post_attention_norm.weight", 1, D, TensorPlan::Ones});
      blk.push_back({p + "post_ffw_norm.weight", 1, D, TensorPlan::Ones});
    }
    std::sort(blk.begin(), blk.end(),
              [](const TensorPlan& a, const TensorPlan& b) { return a.name < b.name; });
    out.insert(out.end(), blk.begin(), blk.end());
  }
  return out;
}

// The linear factor of rope_scaling "linear:F"; 0 for the others.
double linear_factor(const std::string& scaling) {
  if (scaling.rfind("linear:", 0) != 0) return 0.0;
  const std::string v = scaling.substr(7);
  char* end = nullptr;
  const double f = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(f > 0.0) || !std::isfinite(f))
    bad_input("synthetic model: rope scaling '{}' needs a factor > 0 (linear:F)", scaling);
  return f;
}

int64_t window_of(const SynthSpec& s) {
  if (s.sliding_window > 0) return s.sliding_window;
  return s.arch == "gemma2" ? 4096 : 1024;
}

void check_positive(const char* field, int64_t v, int64_t limit) {
  if (v <= 0 || v > limit) bad_input("synthetic model: {} = {} is out of range [1, {}]", field, v, limit);
}

// Validates the shape (the limits the loader accepts) and fills n_vocab from the vocab
// file; returns the vocab file when one is given.
std::optional<gguf::File> check_spec(SynthSpec& s) {
  if (!supported_arch(s.arch))
    bad_input("synthetic model: architecture '{}' is not supported ({})", s.arch,
              supported_arch_names());
  check_positive("embedding length (D)", s.n_embd, int64_t{1} << 20);
  check_positive("layer count (L)", s.n_layer, 4096);
  check_positive("head count (H)", s.n_head, 4096);
  check_positive("KV head count (G)", s.n_head_kv, 4096);
  check_positive("feed-forward length (F)", s.n_ff, int64_t{1} << 20);
  check_positive("context length", s.n_ctx, int64_t{1} << 26);
  if (s.n_embd % s.n_head != 0 && s.head_dim == 0)
    bad_input("synthetic model: embedding length {} is not a multiple of the head count {}",
              s.n_embd, s.n_head);
  check_positive("head dimension (d)", head_dim_of(s), int64_t{1} << 20);
  if (s.n_head % s.n_head_kv != 0)
    bad_input("synthetic model: head count {} is not a multiple of the KV head count {}",
              s.n_head, s.n_head_kv);
  if (head_dim_of(s) % 2 != 0)
    bad_input("synthetic model: head dimension {} must be even (rotary pairs)", head_dim_of(s));
  if (!s.rope_scaling.empty() && s.rope_scaling != "llama3" && linear_factor(s.rope_scaling) == 0.0)
    bad_input("synthetic model: rope scaling '{}' is not one of llama3, linear:F", s.rope_scaling);
  if (s.sliding_window < 0 || s.sliding_window > (int64_t{1} << 30))
    bad_input("synthetic model: sliding window {} is out of range [0, 2^30]", s.sliding_window);
  if (!(s.rope_freq_base > 0.0f) || !std::isfinite(s.rope_freq_base))
    bad_input("synthetic model: rope base {} must be > 0", s.rope_freq_base);
  if (!(s.weight_scale > 0.0f) || !std::isfinite(s.weight_scale))
    bad_input("synthetic model: weight scale {} must be > 0", s.weight_scale);
  if (!(s.rms_eps > 0.0f) || !std::isfinite(s.rms_eps))
    bad_input("synthetic model: RMS norm epsilon {} must be > 0", s.rms_eps);
  if (!s.recipe.empty() && !find_quant_recipe(s.recipe))
    bad_input("synthetic model: quantization recipe '{}' is not one of {}", s.recipe,
              quant_recipe_names());
  const DType t = s.type;
  if (!info(t).matrix)
    bad_input("synthetic model: matrix type {} is not supported ({})", dtype_name(t),
              matrix_type_names());
  const int block = info(t).block_size;
  if (s.recipe.empty() && (s.n_embd % block != 0 || s.n_ff % block != 0))
    bad_input("synthetic model: {} needs the embedding length ({}) and feed-forward length ({}) "
              "to be multiples of {}",
              dtype_name(t), s.n_embd, s.n_ff, block);

  std::optional<gguf::File> vocab;
  if (!s.vocab_path.empty()) {
    vocab.emplace(gguf::File::open(s.vocab_path));
    const auto* tokens = vocab->find("tokenizer.ggml.tokens");
    if (!tokens || !tokens->as_array() || tokens->as_array()->items.empty())
      bad_input("{}: no tokenizer.ggml.tokens array (not a vocabulary file)", s.vocab_path);
    const auto n = int64_t(tokens->as_array()->items.size());
    if (s.n_vocab != 0 && s.n_vocab != n)
      bad_input("{}: the vocabulary has {} tokens but a vocab size of {} was asked for",
                s.vocab_path, n, s.n_vocab);
    s.n_vocab = n;
  }
  check_positive("vocab size (V)", s.n_vocab, int64_t{1} << 24);
  return vocab;
}

void set_metadata(gguf::Writer& w, const SynthSpec& s, const gguf::File* vocab) {
  using gguf::Value;
  const std::string a = s.arch + ".";
  auto u32 = [](int64_t v) { return Value::u32(uint32_t(v)); };
  w.set("general.architecture", Value::str(s.arch));
  w.set("general.name", Value::str(model_name(s)));
  w.set(a + "context_length", u32(s.n_ctx));
  w.set(a + "embedding_length", u32(s.n_embd));
  w.set(a + "block_count", u32(s.n_layer));
  w.set(a + "feed_forward_length", u32(s.n_ff));
  w.set(a + "attention.head_count", u32(s.n_head));
  w.set(a + "attention.head_count_kv", u32(s.n_head_kv));
  const int64_t d = head_dim_of(s);
  if (s.head_dim > 0) {
    w.set(a + "attention.key_length", u32(d));
    w.set(a + "attention.value_length", u32(d));
  }
  w.set(a + "rope.dimension_count", u32(d));
  w.set(a + "rope.freq_base", Value::f32(s.rope_freq_base));
  if (const double f = linear_factor(s.rope_scaling); f > 0.0) {
    w.set(a + "rope.scaling.type", Value::str("linear"));
    w.set(a + "rope.scaling.factor", Value::f32(float(f)));
  }
  w.set(a + "attention.layer_norm_rms_epsilon", Value::f32(s.rms_eps));
  const HParams t = traits_of(s);
  if (t.swa_period > 0) w.set(a + "attention.sliding_window", u32(window_of(s)));
  if (t.attn_softcap > 0.0f)
    w.set(a + "attn_logit_softcapping", Value::f32(t.attn_softcap));
  if (t.final_softcap > 0.0f)
    w.set(a + "final_logit_softcapping", Value::f32(t.final_softcap));
  if (vocab) w.copy_metadata(*vocab, "tokenizer.");
  w.set(a + "vocab_size", u32(s.n_vocab));
  w.set("general.quantization_version", Value::u32(2));
  w.set("general.file_type", Value::u32(s.recipe.empty() ? info(s.type).file_type
                                                          : find_quant_recipe(s.recipe)->file_type));
}

// The type of each planned tensor: the spec's matrix type, or its recipe's choice per
// tensor; vectors stay F32.
std::vector<DType> tensor_types(const SynthSpec& s, const std::vector<TensorPlan>& plan) {
  if (s.recipe.empty()) {
    std::vector<DType> out;
    for (const TensorPlan& p : plan) out.push_back(p.kind == TensorPlan::Matrix ? s.type : DType::F32);
    return out;
  }
  std::vector<RecipeTensor> ts;
  for (const TensorPlan& p : plan)
    ts.push_back({p.name, DType::F32, p.cols, p.kind == TensorPlan::Matrix ? 2 : 1});
  return recipe_types(*find_quant_recipe(s.recipe), ts, s.n_layer, s.n_head / s.n_head_kv);
}

std::vector<uint8_t> make_tensor(const SynthSpec& s, const TensorPlan& p, DType type,
                                 const TensorValues& given) {
  const int64_t n = p.rows * p.cols;
  std::vector<float> values(size_t(n), 1.0f);
  if (given) {
    given(p.name, values.data(), n);
  } else if (p.kind == TensorPlan::RopeFreqs) {
    values = llama3_rope_factors(2 * p.cols, s.rope_freq_base);
  } else if (p.kind != TensorPlan::Ones) {
    fill_normal(s.seed, p.name, values.data(), n);
    if (s.weight_scale != 1.0f)
      for (float& v : values) v *= s.weight_scale;
  } else if (s.random_norms) {
    fill_normal(s.seed, p.name, values.data(), n);
    for (float& v : values) v = 1.0f + 5.0f * v;
  }
  const size_t row = row_bytes(type, p.cols);
  std::vector<uint8_t> bytes(row * size_t(p.rows));
  parallel_ranges(p.rows, p.cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      quantize_row(type, values.data() + r * p.cols, bytes.data() + size_t(r) * row, p.cols);
  });
  return bytes;
}

}  // namespace

SynthSpec synth_preset(const std::string& name) {
  SynthSpec s;  // defaults are the tiny preset
  if (name == "tiny") return s;
  if (name == "small") {
    s.n_embd = 768;
    s.n_layer = 12;
    s.n_head = 12;
    s.n_head_kv = 4;
    s.n_ff = 2048;
    return s;
  }
  bad_input("unknown model preset '{}' (tiny, small)", name);
}

std::vector<float> llama3_rope_factors(int64_t n_rot, float base) {
  constexpr double kFactor = 8.0, kLow = 1.0, kHigh = 4.0, kOldContext = 8192.0;
  const double low_wavelen = kOldContext / kLow, high_wavelen = kOldContext / kHigh;
  std::vector<float> out;
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const double freq = std::pow(double(base), -2.0 * double(i) / double(n_rot));
    const double wavelen = 2.0 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(float(kFactor));
    } else {
      const double smooth = (kOldContext / wavelen - kLow) / (kHigh - kLow);
      out.push_back(float(1.0 / ((1.0 - smooth) / kFactor + smooth)));
    }
  }
  return out;
}

uint64_t synth_key(uint64_t seed, const std::string& tensor_name) {
  const std::string text = std::to_string(seed) + ":" + tensor_name;
  uint64_t h = 0xCBF29CE484222325ull;
  for (const unsigned char c : text) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

void fill_normal(uint64_t seed, const std::string& tensor_name, float* out, int64_t n) {
  if (n <= 0) return;
  const uint64_t key = synth_key(seed, tensor_name);
  const int64_t pairs = (n + 1) / 2;
  parallel_ranges(pairs, 16, [&](int64_t j0, int64_t j1) { fill_pairs(key, out, n, j0, j1); });
}

SynthFootprint synthetic_model_footprint(const SynthSpec& spec) {
  SynthSpec s = spec;
  check_spec(s);
  // Each count is at most 2^44 elements (V 2^24 x D 2^20) and there are at most
  // 16 x 4096 + 4 tensors: the sums stay far below 2^64.
  SynthFootprint f;
  uint64_t largest = 0;
  const auto plan = plan_tensors(s);
  const auto types = tensor_types(s, plan);
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorPlan& p = plan[i];
    const DType type = types[i];
    f.file_bytes += uint64_t(row_bytes(type, p.cols)) * uint64_t(p.rows);
    largest = std::max(largest, uint64_t(p.rows) * uint64_t(p.cols));
  }
  f.peak_bytes = f.file_bytes + largest * sizeof(float);
  return f;
}

std::vector<SynthTensor> synthetic_tensors(const SynthSpec& spec) {
  SynthSpec s = spec;
  check_spec(s);
  std::vector<SynthTensor> out;
  for (const TensorPlan& p : plan_tensors(s))
    out.push_back({p.name, p.rows, p.cols, p.kind == TensorPlan::Matrix});
  return out;
}

void write_synthetic_model(const SynthSpec& spec, const std::string& path,
                           const std::function<void(int, int)>& progress) {
  write_model_values(spec, path, {}, progress);
}

void write_model_values(const SynthSpec& spec, const std::string& path,
                        const TensorValues& values, const std::function<void(int, int)>& progress) {
  SynthSpec s = spec;
  const std::optional<gguf::File> vocab = check_spec(s);
  gguf::Writer w(3);
  set_metadata(w, s, vocab ? &*vocab : nullptr);
  const auto plan = plan_tensors(s);
  const auto types = tensor_types(s, plan);
  const int total = int(plan.size());
  for (int k = 0; k < total; ++k) {
    const auto& p = plan[size_t(k)];
    const DType type = types[size_t(k)];
    std::vector<uint8_t> bytes = make_tensor(s, p, type, values);
    std::vector<int64_t> ne = p.rows == 1 && p.kind != TensorPlan::Matrix
                                  ? std::vector<int64_t>{p.cols}
                                  : std::vector<int64_t>{p.cols, p.rows};
    w.add_tensor(p.name, type, std::move(ne), std::move(bytes));
    if (progress) progress(k + 1, total);
  }
  w.write(path);
}

}  // namespace tandem
