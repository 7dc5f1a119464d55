#include "tandem/model/hparams.hpp"

#include <cmath>
#include <variant>

#include "tandem/core/error.hpp"
#include "tandem/core/log.hpp"
#include "tandem/model/gguf.hpp"

namespace tandem {
namespace {

// What each architecture tandem runs does beyond the Llama block, and the defaults of
// its optional keys. One row per architecture; everything else reads the flags.
struct ArchTraits {
  const char* name;
  bool rope_neox, qk_norm, post_norms, gelu_ffn, embed_scale, fused_layout, tied_embedding;
  int swa_period;          // sliding-window layers: period - 1 local, then one global (0: none)
  int64_t window_default;  // attention.sliding_window when absent (0: no local layers)
  bool attn_cap_key, final_cap_key;  // reads attn_ / final_logit_softcapping
  float attn_softcap_default, final_softcap_default;
  bool local_rope_is_global;  // local layers' rope base and scale default to the global ones
  bool window_ignored;        // attention.sliding_window is read but not applied
  int64_t wide_query_layers;  // a model of this block count scales queries by 1/sqrt(D/H) (0: none)
};

constexpr ArchTraits kArchs[] = {
    // name     neox   qknorm post   gelu   embsc  fused  tied   swa window capkeys (a, f)  a      f      lrg    ign    wq
    {"llama",   false, false, false, false, false, false, false, 0,  0,     false, false,  0.0f,  0.0f,  false, false,  0},
    {"mistral", false, false, false, false, false, false, false, 0,  0,     false, false,  0.0f,  0.0f,  false, false,  0},
    {"qwen2",   true,  false, false, false, false, false, false, 0,  0,     false, false,  0.0f,  0.0f,  false, false,  0},
    {"qwen3",   true,  true,  false, false, false, false, false, 0,  0,     false, false,  0.0f,  0.0f,  false, false,  0},
    // phi3: attention.sliding_window is in its files but not applied (as llama.cpp does)
    {"phi3",    true,  false, false, false, false, true,  false, 0,  0,     false, false,  0.0f,  0.0f,  false, true,  0},
    // gemma2: every other layer local (window 4096 unless the key says), soft-capped
    // attention scores (50) and logits (30) unless the keys say
    {"gemma2",  true,  false, true,  true,  true,  false, true,  2,  4096,  true,  true,   50.0f, 30.0f, true,  false, 46},
    // gemma3: 5 local layers then a global one when the file gives a window; local layers
    // rotate with base rope.freq_base_swa (10000) and no scaling; logits capped if keyed
    {"gemma3",  true,  true,  true,  true,  true,  false, true,  6,  0,     false, true,   0.0f,  0.0f,  false, false, 62},
};

const ArchTraits* find_arch(const std::string& name) {
  for (const ArchTraits& a : kArchs)
    if (name == a.name) return &a;
  return nullptr;
}

}  // namespace

bool supported_arch(const std::string& arch) { return find_arch(arch) != nullptr; }

std::string supported_arch_names() {
  std::string s;
  for (const ArchTraits& a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a.name);
  return s;
}

bool local_layer_of_period(int64_t l, int period) {
  return period > 0 && l % period < period - 1;
}

void HParams::set_arch(const std::string& name, const std::string& where) {
  const ArchTraits* t = find_arch(name);
  if (!t)
    bad_input("{}: general.architecture '{}' is not supported ({})", where, name,
              supported_arch_names());
  arch = name;
  rope_neox = t->rope_neox;
  qk_norm = t->qk_norm;
  post_norms = t->post_norms;
  gelu_ffn = t->gelu_ffn;
  embed_scale = t->embed_scale;
  fused_layout = t->fused_layout;
  tied_embedding = t->tied_embedding;
  attn_softcap = t->attn_softcap_default;
  final_softcap = t->final_softcap_default;
  sliding_window = t->window_default;
  swa_period = t->swa_period;
  local_layers.clear();
  if (t->swa_period > 0 && sliding_window > 0)
    for (int64_t l = 0; l < n_layer; ++l)
      local_layers.push_back(local_layer_of_period(l, t->swa_period) ? 1 : 0);
  rope_freq_base_local = t->local_rope_is_global ? rope_freq_base : 10000.0f;
  rope_freq_scale_local = t->local_rope_is_global ? rope_freq_scale : 1.0f;
}

namespace {

// The rope scaling keys: linear scaling (the default type when only a factor is given)
// sets the frequency scale; "none" keeps 1; any other type is refused by name.
float rope_scale(const gguf::File& f, const std::string& a) {
  const std::string type_key = a + "rope.scaling.type";
  const std::string type = f.find_string(type_key).value_or("linear");
  if (type == "none") return 1.0f;
  if (type != "linear")
    bad_input("{}: {} '{}' is not supported (none, linear)", f.path(), type_key, type);
  std::string factor_key = a + "rope.scaling.factor";
  auto factor = f.find_float(factor_key);
  if (!factor) factor = f.find_float(factor_key = a + "rope.scale_linear");
  if (!factor || *factor == 0.0) return 1.0f;
  if (!(*factor > 0.0) || !std::isfinite(*factor))
    bad_input("{}: {} = {} must be > 0", f.path(), factor_key, *factor);
  return float(1.0 / *factor);
}

// A per-layer flag array (bool or integer items), one per layer.
std::vector<uint8_t> layer_flags(const gguf::File& f, const std::string& key, int64_t n_layer) {
  const gguf::Array& arr = f.get_array(key);
  if (int64_t(arr.items.size()) != n_layer)
    bad_input("{}: {} has {} items but the model has {} layers", f.path(), key, arr.items.size(),
              n_layer);
  std::vector<uint8_t> out;
  for (const gguf::Value& v : arr.items) {
    if (const auto* b = std::get_if<bool>(&v.v)) {
      out.push_back(*b ? 1 : 0);
    } else if (auto i = v.as_int()) {
      out.push_back(*i != 0 ? 1 : 0);
    } else {
      bad_input("{}: {} must hold booleans or integers", f.path(), key);
    }
  }
  return out;
}

}  // namespace

HParams HParams::from_gguf(const gguf::File& f) {
  HParams h;
  const std::string arch = f.get_string("general.architecture");
  const ArchTraits* t = find_arch(arch);
  if (!t)
    bad_input("{}: general.architecture '{}' is not supported ({})", f.path(), arch,
              supported_arch_names());
  const std::string a = arch + ".";
  h.n_embd = f.get_int(a + "embedding_length");
  h.n_layer = f.get_int(a + "block_count");
  h.n_ff = f.get_int(a + "feed_forward_length");
  h.n_head = f.get_int(a + "attention.head_count");
  h.n_head_kv = f.find_int(a + "attention.head_count_kv").value_or(h.n_head);
  h.n_ctx_train = f.find_int(a + "context_length").value_or(4096);
  if (h.n_head <= 0) bad_input("{}: {}attention.head_count must be > 0", f.path(), a);
  h.head_dim = f.find_int(a + "attention.key_length").value_or(h.n_embd / h.n_head);
  if (auto vl = f.find_int(a + "attention.value_length"); vl && *vl != h.head_dim)
    bad_input("{}: {}attention.value_length {} differs from key_length {} (unsupported)", f.path(),
              a, *vl, h.head_dim);
  h.n_rot = f.find_int(a + "rope.dimension_count").value_or(h.head_dim);
  h.rope_freq_base = float(f.find_float(a + "rope.freq_base").value_or(10000.0));
  h.rope_freq_scale = rope_scale(f, a);
  h.rms_eps = float(f.find_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  if (auto v = f.find_int(a + "vocab_size")) {
    h.n_vocab = *v;
  } else if (const auto* tok = f.find("tokenizer.ggml.tokens"); tok && tok->as_array()) {
    h.n_vocab = int64_t(tok->as_array()->items.size());
  }
  if (h.n_layer < 1 || h.n_layer > 4096)  // before sizing per-layer arrays
    bad_input("{}: {}block_count = {} is out of range [1, 4096]", f.path(), a, h.n_layer);
  h.set_arch(arch, f.path());
  // gemma2 27B (46 layers) and gemma3 27B (62): queries scaled by 1/sqrt(D/H), as their
  // reference implementations and llama.cpp do (D/H = 144 and 168 against d = 128).
  if (t->wide_query_layers > 0 && h.n_layer == t->wide_query_layers)
    h.attn_scale = 1.0f / std::sqrt(float(h.n_embd / h.n_head));

  const std::string window_key = a + "attention.sliding_window";
  const auto window = f.find_int(window_key);
  if (t->swa_period > 0) {
    h.sliding_window = window.value_or(t->window_default);
    h.local_layers.clear();
    if (h.sliding_window > 0) {
      const std::string pattern_key = a + "attention.sliding_window_pattern";
      if (f.find(pattern_key)) {
        h.local_layers = layer_flags(f, pattern_key, h.n_layer);
      } else {
        for (int64_t l = 0; l < h.n_layer; ++l)
          h.local_layers.push_back(local_layer_of_period(l, t->swa_period) ? 1 : 0);
      }
    }
    h.rope_freq_base_local = float(f.find_float(a + "rope.freq_base_swa")
                                       .value_or(t->local_rope_is_global ? h.rope_freq_base
                                                                         : 10000.0));
  } else if (window && *window > 0) {
    if (!t->window_ignored)
      bad_input("{}: {} = {} is not supported for {} (no sliding-window layers)", f.path(),
                window_key, *window, arch);
    log(LogLevel::Info, "{}: {} = {} is not applied: {} attends over the whole prefix", f.path(),
        window_key, *window, arch);
  }
  for (const bool attn : {true, false}) {
    const std::string key = a + (attn ? "attn_logit_softcapping" : "final_logit_softcapping");
    const auto v = f.find_float(key);
    if (!v) continue;
    if (!(attn ? t->attn_cap_key : t->final_cap_key)) {
      if (*v != 0.0) bad_input("{}: {} = {} is not supported for {}", f.path(), key, *v, arch);
      continue;
    }
    if (!(*v >= 0.0) || !std::isfinite(*v))
      bad_input("{}: {} = {} must be >= 0", f.path(), key, *v);
    (attn ? h.attn_softcap : h.final_softcap) = float(*v);
  }
  h.validate(f.path());
  return h;
}

float HParams::query_scale() const {
  return attn_scale > 0.0f ? attn_scale : 1.0f / std::sqrt(float(head_dim));
}

void HParams::validate(const std::string& where) const {
  constexpr int64_t kMaxDim = int64_t{1} << 20;
  auto in_range = [&](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) bad_input("{}: {} = {} is out of range [{}, {}]", where, name, v, lo, hi);
  };
  in_range("embedding_length (D)", n_embd, 1, kMaxDim);
  in_range("block_count (L)", n_layer, 1, 4096);
  in_range("feed_forward_length (F)", n_ff, 1, kMaxDim);
  in_range("attention.head_count (H)", n_head, 1, 4096);
  in_range("attention.head_count_kv (G)", n_head_kv, 1, n_head);
  in_range("head dim (d)", head_dim, 1, 4096);
  in_range("rope.dimension_count", n_rot, 0, head_dim);
  in_range("vocab_size (V)", n_vocab, 1, int64_t{1} << 24);
  in_range("context_length", n_ctx_train, 1, int64_t{1} << 26);
  in_range("attention.sliding_window", sliding_window, 0, int64_t{1} << 30);
  if (!(attn_softcap >= 0.0f) || !std::isfinite(attn_softcap) || !(final_softcap >= 0.0f) ||
      !std::isfinite(final_softcap))
    bad_input("{}: soft-capping values must be finite and >= 0", where);
  if (n_head % n_head_kv != 0)
    bad_input("{}: attention.head_count {} is not a multiple of head_count_kv {}", where, n_head,
              n_head_kv);
  if (n_rot % 2 != 0) bad_input("{}: rope.dimension_count {} must be even", where, n_rot);
  if (!(rms_eps > 0.0f) || !(rope_freq_base > 0.0f) || !(rope_freq_base_local > 0.0f))
    bad_input("{}: layer_norm_rms_epsilon, rope.freq_base and rope.freq_base_swa must be > 0",
              where);
  if (!(rope_freq_scale > 0.0f) || !std::isfinite(rope_freq_scale))
    bad_input("{}: rope.scaling.factor gives a frequency scale of {}", where, rope_freq_scale);
  if (!local_layers.empty() && int64_t(local_layers.size()) != n_layer)
    bad_input("{}: {} layer flags for {} layers", where, local_layers.size(), n_layer);
}

}  // namespace tandem
