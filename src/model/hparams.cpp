#include "tandem/model/hparams.hpp"

#include "tandem/core/error.hpp"
#include "tandem/model/gguf.hpp"

namespace tandem {

bool supported_arch(const std::string& arch) {
  return arch == "llama" || arch == "qwen2" || arch == "mistral";
}

HParams HParams::from_gguf(const gguf::File& f) {
  HParams h;
  h.arch = f.get_string("general.architecture");
  if (!supported_arch(h.arch))
    bad_input("{}: general.architecture '{}' is not supported (llama, qwen2, mistral)", f.path(),
              h.arch);
  const std::string a = h.arch + ".";
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
  h.rms_eps = float(f.find_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  if (auto v = f.find_int(a + "vocab_size")) {
    h.n_vocab = *v;
  } else if (const auto* t = f.find("tokenizer.ggml.tokens"); t && t->as_array()) {
    h.n_vocab = int64_t(t->as_array()->items.size());
  }
  if (auto scaling = f.find_string(a + "rope.scaling.type"); scaling && *scaling != "none")
    bad_input("{}: {}rope.scaling.type '{}' is not supported", f.path(), a, *scaling);
  h.validate(f.path());
  return h;
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
  if (n_head % n_head_kv != 0)
    bad_input("{}: attention.head_count {} is not a multiple of head_count_kv {}", where, n_head,
              n_head_kv);
  if (n_rot % 2 != 0) bad_input("{}: rope.dimension_count {} must be even", where, n_rot);
  if (!(rms_eps > 0.0f) || !(rope_freq_base > 0.0f))
    bad_input("{}: layer_norm_rms_epsilon and rope.freq_base must be > 0", where);
}

}  // namespace tandem
