// Model shapes for the cost model: published architectures, synthetic presets, GGUF files.
#include "tandem/analysis/model_shapes.hpp"

#include <map>

#include "tandem/core/dtype.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/hparams.hpp"

namespace tandem::analysis {

int64_t ModelShape::layer_matmul_params() const {
  const int64_t D = n_embd, q = n_head * head_dim, kv = n_head_kv * head_dim;
  return D * q + 2 * D * kv + q * D + 3 * D * n_ff;
}

int64_t ModelShape::params() const {
  const int64_t per_layer = layer_matmul_params() + 2 * n_embd;
  return n_layer * per_layer + n_vocab * n_embd * (tied_output ? 1 : 2) + n_embd;
}

void ModelShape::validate(const std::string& where) const {
  auto positive = [&](const char* what, int64_t v) {
    if (v <= 0) bad_input("{}: {} = {} must be > 0", where, what, v);
  };
  positive("layers (L)", n_layer);
  positive("model dim (D)", n_embd);
  positive("query heads (H)", n_head);
  positive("KV heads (G)", n_head_kv);
  positive("head dim (d)", head_dim);
  positive("FFN dim (F)", n_ff);
  positive("vocab (V)", n_vocab);
  if (n_head % n_head_kv != 0)
    bad_input("{}: KV heads G = {} do not divide query heads H = {}", where, n_head_kv, n_head);
}

namespace {

// Architecture numbers as published with each model (config.json / model card):
// name, L, D, H, G, F, V; head dim d = D / H for all of them.
struct Row {
  const char* name;
  int64_t L, D, H, G, F, V;
  bool tied;
};
constexpr Row kShapes[] = {
    {"llama3-8b", 32, 4096, 32, 8, 14336, 128256, false},
    {"llama3-70b", 80, 8192, 64, 8, 28672, 128256, false},
    {"llama3-405b", 126, 16384, 128, 8, 53248, 128256, false},
    {"llama2-7b", 32, 4096, 32, 32, 11008, 32000, false},
    {"llama2-70b", 80, 8192, 64, 8, 28672, 32000, false},
    {"mistral-7b", 32, 4096, 32, 8, 14336, 32000, false},
    {"qwen2-7b", 28, 3584, 28, 4, 18944, 152064, false},
    // tandem's synthetic presets (tandem make-model --preset).
    {"tiny", 6, 288, 6, 6, 768, 32000, false},
    {"small", 12, 768, 12, 4, 2048, 32000, false},
};

}  // namespace

std::optional<ModelShape> named_shape(std::string_view name) {
  for (const auto& r : kShapes) {
    if (name != r.name) continue;
    ModelShape s;
    s.name = r.name;
    s.n_layer = r.L;
    s.n_embd = r.D;
    s.n_head = r.H;
    s.n_head_kv = r.G;
    s.head_dim = r.D / r.H;
    s.n_ff = r.F;
    s.n_vocab = r.V;
    s.tied_output = r.tied;
    return s;
  }
  return std::nullopt;
}

const std::vector<std::string>& names_of_shapes() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& r : kShapes) v.emplace_back(r.name);
    return v;
  }();
  return names;
}

GgufShape shape_from_gguf(const std::string& path) {
  const auto f = gguf::File::open(path);
  const auto h = HParams::from_gguf(f);
  GgufShape g;
  auto& s = g.shape;
  s.name = f.find_string("general.name").value_or(path);
  s.n_layer = h.n_layer;
  s.n_embd = h.n_embd;
  s.n_head = h.n_head;
  s.n_head_kv = h.n_head_kv;
  s.head_dim = h.head_dim;
  s.n_ff = h.n_ff;
  s.n_vocab = h.n_vocab;
  s.tied_output = f.find_tensor("output.weight") == nullptr;
  s.validate(path);
  // The weight type: the one holding most bytes among matrices (norms stay f32).
  std::map<std::string, uint64_t> bytes;
  for (const auto& t : f.tensors())
    if (t.ne.size() >= 2) bytes[std::string(dtype_name(t.type))] += t.nbytes;
  g.weight_dtype = "f32";
  uint64_t most = 0;
  for (const auto& [name, n] : bytes)
    if (n > most) most = n, g.weight_dtype = name;
  if (g.weight_dtype == "f16") g.weight_dtype = "fp16";
  return g;
}

}  // namespace tandem::analysis
