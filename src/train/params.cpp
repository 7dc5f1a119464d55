#include "tandem/train/params.hpp"

#include <algorithm>

#include "tandem/core/error.hpp"
#include "tandem/core/quant_rows.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/hparams.hpp"

namespace tandem::train {

namespace {
// Each tensor starts on a 64-byte boundary (16 floats) for the vector kernels.
size_t padded_floats(const SynthTensor& t) { return (size_t(t.rows * t.cols) + 15) / 16 * 16; }
}  // namespace

ParamSet::ParamSet(const SynthSpec& spec) : spec_(spec) {
  TD_CHECK(spec_.arch == "llama" && !spec_.qkv_bias && !spec_.tied_output);
  spec_.type = DType::F32;
  spec_.recipe.clear();
  tensors_ = synthetic_tensors(spec_);
  size_t total = 0;
  for (const SynthTensor& t : tensors_) {
    offsets_.push_back(total);
    total += padded_floats(t);
  }
  data_.assign(total, 0.0f);
}

int64_t ParamSet::floats_of(const SynthSpec& spec) {
  size_t total = 0;
  for (const SynthTensor& t : synthetic_tensors(spec)) total += padded_floats(t);
  return int64_t(total);
}

float* ParamSet::find(const std::string& name) {
  return const_cast<float*>(static_cast<const ParamSet&>(*this).find(name));
}

const float* ParamSet::find(const std::string& name) const {
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (tensors_[i].name == name) return data_.data() + offsets_[i];
  fail(ErrorKind::Internal, "train: no tensor {} in the model", name);
}

ParamSet::Span ParamSet::span(const std::string& name) const {
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (tensors_[i].name == name) return {int64_t(offsets_[i]), int64_t(padded_floats(tensors_[i]))};
  fail(ErrorKind::Internal, "train: no tensor {} in the model", name);
}

std::vector<ParamSet::Span> ParamSet::layer_spans(int64_t l) const {
  const std::string p = "blk." + std::to_string(l) + ".";
  std::vector<Span> out;
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (tensors_[i].name.starts_with(p))
      out.push_back({int64_t(offsets_[i]), int64_t(padded_floats(tensors_[i]))});
  return out;
}

ParamSet::Layer ParamSet::layer(int64_t l) {
  const std::string p = "blk." + std::to_string(l) + ".";
  return {find(p + "attn_norm.weight"),  find(p + "attn_q.weight"),  find(p + "attn_k.weight"),
          find(p + "attn_v.weight"),     find(p + "attn_output.weight"),
          find(p + "ffn_norm.weight"),   find(p + "ffn_gate.weight"), find(p + "ffn_up.weight"),
          find(p + "ffn_down.weight")};
}

MatrixView f32_matrix(const float* p, int64_t rows, int64_t cols) {
  MatrixView m;
  m.type = DType::F32;
  m.rows = rows;
  m.cols = cols;
  m.data = p;
  m.row_stride = size_t(cols) * sizeof(float);
  return m;
}

SynthSpec preset_spec(const std::string& preset, int64_t n_vocab, const std::string& vocab_path) {
  SynthSpec s = synth_preset(preset);
  s.type = DType::F32;
  s.vocab_path = vocab_path;
  s.n_vocab = n_vocab;
  if (!vocab_path.empty()) {
    const gguf::File f = gguf::File::open(vocab_path);
    const gguf::Value* tokens = f.find("tokenizer.ggml.tokens");
    if (!tokens || !tokens->as_array())
      bad_input("--vocab {}: no tokenizer.ggml.tokens array (not a vocabulary file)", vocab_path);
    s.n_vocab = int64_t(tokens->as_array()->items.size());
  }
  synthetic_tensors(s);  // validates
  return s;
}

SynthSpec spec_of_model(const std::string& path) {
  const gguf::File f = gguf::File::open(path);
  const HParams hp = HParams::from_gguf(f);
  auto refuse = [&](const char* what) {
    bad_input("{}: tandem train runs the plain Llama block; this model has {}", path, what);
  };
  if (hp.arch != "llama") refuse(("architecture " + hp.arch).c_str());
  if (hp.n_rot != hp.head_dim) refuse("rotary dims different from the head dim");
  if (hp.rope_freq_scale != 1.0f || f.find_tensor("rope_freqs.weight")) refuse("rope scaling");
  if (!f.find_tensor("output.weight")) refuse("an output tied to the embedding");
  if (f.find_tensor("blk.0.attn_qkv.weight")) refuse("fused QKV weights");
  if (f.find_tensor("blk.0.attn_q.bias")) refuse("attention biases");
  SynthSpec s;
  s.arch = "llama";
  s.n_embd = hp.n_embd;
  s.n_layer = hp.n_layer;
  s.n_head = hp.n_head;
  s.n_head_kv = hp.n_head_kv;
  s.n_ff = hp.n_ff;
  s.n_ctx = hp.n_ctx_train > 0 ? hp.n_ctx_train : s.n_ctx;
  s.rope_freq_base = hp.rope_freq_base;
  s.rms_eps = hp.rms_eps;
  s.head_dim = hp.head_dim * hp.n_head == hp.n_embd ? 0 : hp.head_dim;
  s.type = DType::F32;
  s.n_vocab = hp.n_vocab;
  if (f.find("tokenizer.ggml.tokens")) s.vocab_path = path;
  synthetic_tensors(s);
  return s;
}

void init_params(ParamSet& p) {
  for (const SynthTensor& t : p.tensors()) {
    float* out = p.find(t.name);
    const int64_t n = t.rows * t.cols;
    if (t.matrix) {
      fill_normal(p.spec().seed, t.name, out, n);
    } else {
      std::fill(out, out + n, 1.0f);
    }
  }
}

void load_params(ParamSet& p, const std::string& path) {
  const gguf::File f = gguf::File::open(path);
  for (const SynthTensor& t : p.tensors()) {
    const gguf::TensorInfo* ti = f.find_tensor(t.name);
    if (!ti) bad_input("{}: no tensor {}", path, t.name);
    const int64_t rows = ti->ne.size() > 1 ? ti->ne[1] : 1;
    if (ti->ne[0] != t.cols || rows != t.rows || ti->ne.size() > 2)
      bad_input("{}: tensor {} is not [{}][{}] as the model's shape needs", path, t.name,
                t.rows, t.cols);
    const uint8_t* src = f.tensor_data(*ti);
    const size_t row = row_bytes(ti->type, t.cols);
    float* out = p.find(t.name);
    for (int64_t r = 0; r < t.rows; ++r)
      dequantize_row(ti->type, src + size_t(r) * row, out + r * t.cols, t.cols);
  }
}

void save_params(const ParamSet& p, const std::string& path) {
  write_model_values(p.spec(), path, [&](const std::string& name, float* out, int64_t n) {
    const float* src = p.find(name);
    std::copy(src, src + n, out);
  });
}

}  // namespace tandem::train
