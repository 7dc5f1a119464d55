#include "tandem/model/model.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>

#include "tandem/core/error.hpp"
#include "tandem/core/process_memory.hpp"

namespace tandem {
namespace {

// The traits table's matrix types (core/dtype.hpp); false for an id it does not know.
bool is_matrix_type(DType t) {
  const auto i = dtype_info(static_cast<uint32_t>(t));
  return i && i->matrix;
}

// Binds tensors by name and remembers which it bound, so that a tensor the architecture
// does not read (a feature tandem does not run) is refused rather than ignored.
class Binder {
 public:
  explicit Binder(const gguf::File& f) : f_(f) {}

  const gguf::TensorInfo* find(const std::string& name) const {
    const auto* t = f_.find_tensor(name);
    if (t) used_.insert(t->name);
    return t;
  }

  // Rows [r0, r0 + n) of m, a view of the same bytes.
  static MatrixView rows(const MatrixView& m, int64_t r0, int64_t n) {
    MatrixView v = m;
    v.rows = n;
    v.data = m.row(r0);
    return v;
  }

  // The first tensor of the file that nothing bound, or null.
  const gguf::TensorInfo* unused() const {
    for (const auto& t : f_.tensors())
      if (!used_.count(t.name)) return &t;
    return nullptr;
  }

  MatrixView matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const auto* t = find(name);
    if (!t) bad_input("{}: missing tensor '{}'", f_.path(), name);
    return matrix(*t, rows, cols);
  }

  MatrixView matrix(const gguf::TensorInfo& t, int64_t rows, int64_t cols) const {
    if (t.ne.size() != 2 || t.ne[0] != cols || t.ne[1] != rows)
      bad_input("{}: tensor '{}' has shape {} but {{{}, {}}} was expected", f_.path(), t.name,
                shape(t), cols, rows);
    if (!is_matrix_type(t.type))
      bad_input("{}: tensor '{}' has type {}, unsupported for a weight matrix", f_.path(), t.name,
                dtype_name(t.type));
    MatrixView m;
    m.type = t.type;
    m.rows = rows;
    m.cols = cols;
    m.data = f_.tensor_data(t);
    m.row_stride = row_bytes(t.type, cols);
    return m;
  }

  const float* vector(const std::string& name, int64_t n, bool required = true) const {
    const auto* t = find(name);
    if (!t) {
      if (required) bad_input("{}: missing tensor '{}'", f_.path(), name);
      return nullptr;
    }
    if (t->ne.size() != 1 || t->ne[0] != n)
      bad_input("{}: tensor '{}' has shape {} but {{{}}} was expected", f_.path(), name, shape(*t),
                n);
    if (t->type != DType::F32)
      bad_input("{}: tensor '{}' has type {}; norm and bias vectors must be f32", f_.path(), name,
                dtype_name(t->type));
    if (reinterpret_cast<uintptr_t>(f_.tensor_data(*t)) % alignof(float) != 0)
      bad_input("{}: tensor '{}' data is misaligned", f_.path(), name);
    return reinterpret_cast<const float*>(f_.tensor_data(*t));
  }

  static std::string shape(const gguf::TensorInfo& t) {
    std::string s = "{";
    for (size_t i = 0; i < t.ne.size(); ++i) s += (i ? ", " : "") + std::to_string(t.ne[i]);
    return s + "}";
  }

 private:
  const gguf::File& f_;
  mutable std::set<std::string> used_;
};

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path) {
  gguf::File f = gguf::File::open(path);
  HParams hp = HParams::from_gguf(f);
  std::unique_ptr<Model> m(new Model(std::move(f), std::move(hp)));
  m->bind_weights();
  if (m->file_.find("tokenizer.ggml.model")) {
    m->tokenizer_.emplace(Tokenizer::from_gguf(m->file_));
    if (m->tokenizer_->n_vocab() != m->hp_.n_vocab)
      bad_input("{}: tokenizer has {} tokens but the model's vocabulary is {}", path,
                m->tokenizer_->n_vocab(), m->hp_.n_vocab);
    // The tokenizer holds the vocabulary now; the parsed arrays were as large again
    // (4.6 MB for 32000 tokens), held by every process for nothing.
    m->file_.forget_arrays("tokenizer.ggml.");
  }
  return m;
}

void Model::bind_weights() {
  const Binder b(file_);
  const auto& h = hp_;
  const int64_t D = h.n_embd, V = h.n_vocab, F = h.n_ff, Q = h.q_dim(), K = h.kv_dim();
  for (const char* name : {"rope_factors_long.weight", "rope_factors_short.weight"})
    if (file_.find_tensor(name))
      bad_input("{}: tensor '{}' (long-context rope factors) is not supported", file_.path(), name);
  tok_embd = b.matrix("token_embd.weight", V, D);
  rope_freqs = b.vector("rope_freqs.weight", h.n_rot / 2, false);
  output_norm = b.vector("output_norm.weight", D);
  if (const auto* t = b.find("output.weight")) {
    output = b.matrix(*t, V, D);
  } else {
    output = tok_embd;
    output_tied = true;
  }
  layers.resize(size_t(h.n_layer));
  for (int64_t i = 0; i < h.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    auto& l = layers[size_t(i)];
    l.attn_norm = b.vector(p + "attn_norm.weight", D);
    if (const auto* qkv = b.find(p + "attn_qkv.weight")) {
      const MatrixView all = b.matrix(*qkv, Q + 2 * K, D);
      l.wq = Binder::rows(all, 0, Q);
      l.wk = Binder::rows(all, Q, K);
      l.wv = Binder::rows(all, Q + K, K);
    } else {
      l.wq = b.matrix(p + "attn_q.weight", Q, D);
      l.wk = b.matrix(p + "attn_k.weight", K, D);
      l.wv = b.matrix(p + "attn_v.weight", K, D);
    }
    l.bq = b.vector(p + "attn_q.bias", Q, false);
    l.bk = b.vector(p + "attn_k.bias", K, false);
    l.bv = b.vector(p + "attn_v.bias", K, false);
    if (h.qk_norm) {
      l.q_norm = b.vector(p + "attn_q_norm.weight", h.head_dim);
      l.k_norm = b.vector(p + "attn_k_norm.weight", h.head_dim);
    }
    l.wo = b.matrix(p + "attn_output.weight", D, Q);
    l.ffn_norm = b.vector(p + "ffn_norm.weight", D);
    if (b.find(p + "ffn_gate.weight")) {
      l.w_gate = b.matrix(p + "ffn_gate.weight", F, D);
      l.w_up = b.matrix(p + "ffn_up.weight", F, D);
    } else {  // fused: the first F rows of ffn_up are the gate, the rest the up projection
      const MatrixView gate_up = b.matrix(p + "ffn_up.weight", 2 * F, D);
      l.w_gate = Binder::rows(gate_up, 0, F);
      l.w_up = Binder::rows(gate_up, F, F);
    }
    l.w_down = b.matrix(p + "ffn_down.weight", D, F);
    if (h.post_norms) {
      l.post_attn_norm = b.vector(p + "post_attention_norm.weight", D);
      l.post_ffn_norm = b.vector(p + "post_ffw_norm.weight", D);
    }
  }
  if (const auto* t = b.unused())
    bad_input("{}: tensor '{}' is not part of the {} architecture as tandem runs it (unsupported)",
              file_.path(), t->name, h.arch);
}

void Model::FreeAligned::operator()(uint8_t* p) const { std::free(p); }

std::vector<MatrixView*> Model::matrices() {
  std::vector<MatrixView*> mats;
  for (auto& l : layers)
    for (MatrixView* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) mats.push_back(w);
  mats.push_back(&output);  // tied: the embedding's view (tok_embd itself stays in the mapping)
  return mats;
}

void Model::adopt_weight_copies(uint8_t* arena, size_t matrix_bytes, size_t other_bytes,
                                size_t held_bytes) {
  weight_arenas_.emplace_back(arena);
  copied_bytes_ += matrix_bytes;
  arena_held_bytes_ += std::max(held_bytes, matrix_bytes + other_bytes);
}

void Model::drop_file_range(const void* data, size_t bytes) {
  const long pg = ::sysconf(_SC_PAGESIZE);
  if (!file_.mapped() || pg <= 0) return;
  const uintptr_t page = uintptr_t(pg), a = reinterpret_cast<uintptr_t>(data);
  const uintptr_t lo = (a + page - 1) / page * page, hi = (a + bytes) / page * page;
  if (hi <= lo) return;
  ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

void Model::drop_mapping_except(const void* keep, size_t keep_bytes) {
  if (!file_.mapped()) return;
  // The mapping is whole pages: its last partial page goes too.
  const uintptr_t page = uintptr_t(std::max(::sysconf(_SC_PAGESIZE), 1L));
  const uintptr_t base = reinterpret_cast<uintptr_t>(file_.bytes());
  const uintptr_t end = base + (file_.file_size() + page - 1) / page * page;
  uintptr_t lo = reinterpret_cast<uintptr_t>(keep), hi = lo + keep_bytes;
  if (keep_bytes == 0 || lo < base || hi > end) lo = hi = base;
  lo = lo / page * page;
  hi = std::min(end, (hi + page - 1) / page * page);
  if (lo > base) ::madvise(reinterpret_cast<void*>(base), lo - base, MADV_DONTNEED);
  if (end > hi) ::madvise(reinterpret_cast<void*>(hi), end - hi, MADV_DONTNEED);
  dropped_bytes_ = std::min<size_t>(file_.file_size(), (lo - base) + (end - hi));
}

size_t Model::resident_weight_bytes() const {
  // The mapping's pages resident now, where the process can tell (e.g. the embedding's
  // rows a prompt read), else the mapping less what was dropped.
  const int64_t mapped = file_.mapped() ? resident_bytes_of(file_.bytes(), file_.file_size()) : -1;
  return (mapped >= 0 ? size_t(mapped)
                      : file_.file_size() - std::min(dropped_bytes_, file_.file_size())) +
         arena_held_bytes_;
}

size_t Model::weight_bytes() const {
  auto bytes = [](const MatrixView& w) { return w.packed ? w.packed_bytes : w.nbytes(); };
  size_t n = bytes(output);
  for (const auto& l : layers)
    n += bytes(l.wq) + bytes(l.wk) + bytes(l.wv) + bytes(l.wo) + bytes(l.w_gate) +
         bytes(l.w_up) + bytes(l.w_down);
  return n;
}

}  // namespace tandem
