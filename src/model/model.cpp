#include "tandem/model/model.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "tandem/core/error.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem {
namespace {

bool is_matrix_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 ||
         t == DType::Q4_0;
}

class Binder {
 public:
  explicit Binder(const gguf::File& f) : f_(f) {}

  const gguf::TensorInfo* find(const std::string& name) const { return f_.find_tensor(name); }

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
};

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path) {
  gguf::File f = gguf::File::open(path);
  HParams hp = HParams::from_gguf(f);
  std::unique_ptr<Model> m(new Model(std::move(f), std::move(hp)));
  m->bind_weights();
  m->pack_weights();
  if (m->file_.find("tokenizer.ggml.model")) {
    m->tokenizer_.emplace(Tokenizer::from_gguf(m->file_));
    if (m->tokenizer_->n_vocab() != m->hp_.n_vocab)
      bad_input("{}: tokenizer has {} tokens but the model's vocabulary is {}", path,
                m->tokenizer_->n_vocab(), m->hp_.n_vocab);
  }
  return m;
}

void Model::bind_weights() {
  const Binder b(file_);
  const auto& h = hp_;
  const int64_t D = h.n_embd, V = h.n_vocab, F = h.n_ff, Q = h.q_dim(), K = h.kv_dim();
  tok_embd = b.matrix("token_embd.weight", V, D);
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
    l.wq = b.matrix(p + "attn_q.weight", Q, D);
    l.wk = b.matrix(p + "attn_k.weight", K, D);
    l.wv = b.matrix(p + "attn_v.weight", K, D);
    l.bq = b.vector(p + "attn_q.bias", Q, false);
    l.bk = b.vector(p + "attn_k.bias", K, false);
    l.bv = b.vector(p + "attn_v.bias", K, false);
    l.wo = b.matrix(p + "attn_output.weight", D, Q);
    l.ffn_norm = b.vector(p + "ffn_norm.weight", D);
    l.w_gate = b.matrix(p + "ffn_gate.weight", F, D);
    l.w_up = b.matrix(p + "ffn_up.weight", F, D);
    l.w_down = b.matrix(p + "ffn_down.weight", D, F);
  }
}

void Model::FreeAligned::operator()(uint8_t* p) const { std::free(p); }

// Weight repacking at load: every Q8_0/Q4_0 matrix the kernels in use read faster from a
// layout of their own gets a packed copy (kernels::pack_weight); every other matrix gets
// a plain copy, so that all of them live in one arena of huge pages. The mapping stays;
// the copied ranges are dropped from the process. TANDEM_NO_REPACK=1 turns it off (A/B
// measurement).
void Model::pack_weights() {
  if (const char* e = std::getenv("TANDEM_NO_REPACK"); e && *e && std::strcmp(e, "0") != 0)
    return;
  const long pg = ::sysconf(_SC_PAGESIZE);
  const uintptr_t page = pg > 0 ? uintptr_t(pg) : 0;
  std::vector<MatrixView*> mats;
  for (auto& l : layers)
    for (MatrixView* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) mats.push_back(w);
  mats.push_back(&output);  // tied: tok_embd keeps the original only (get_rows reads that)
  // One arena for every matrix, in 2 MiB huge pages where the kernel gives them (fewer TLB
  // misses on the decode stream; F32 decode 3-6% faster than without the copy, measured
  // with tandem bench -p 0 -n 128 against TANDEM_NO_REPACK=1 on a quiet machine).
  constexpr size_t kHuge = size_t(2) << 20;
  size_t total = 0;
  auto arena_size = [](const MatrixView& w) {
    const size_t p = kernels::packed_size(w);
    return p ? p : w.nbytes();
  };
  for (const MatrixView* w : mats) total += (arena_size(*w) + 63) / 64 * 64;
  if (total == 0) return;
  total = (total + kHuge - 1) / kHuge * kHuge;
  auto* arena = static_cast<uint8_t*>(std::aligned_alloc(kHuge, total));
  if (!arena) fail(ErrorKind::Resource, "out of memory repacking {} bytes of weights", total);
  packed_.emplace_back(arena);
  ::madvise(arena, total, MADV_HUGEPAGE);  // advice only: 4 KiB pages where refused
  size_t used = 0;
  auto pack = [&](MatrixView& w) {
    const size_t n = arena_size(w);
    if (n == 0) return;
    uint8_t* p = arena + used;
    used += (n + 63) / 64 * 64;
    const auto a = reinterpret_cast<uintptr_t>(w.data);
    const size_t original = w.nbytes();
    if (kernels::packed_size(w) > 0) {
      w.packed_layout = kernels::pack_weight(w, p);
      w.packed = p;
    } else {
      std::memcpy(p, w.data, n);  // same layout, better pages
      w.data = p;
    }
    packed_bytes_ += n;
    // The original pages are read only by the reference kernels and get_rows (a tied
    // embedding) from now on: drop them from this process (a later read faults them in
    // again from the file), so the matrix is not resident twice.
    if (file_.mapped() && page > 0) {
      const uintptr_t lo = (a + page - 1) / page * page, hi = (a + original) / page * page;
      if (hi > lo) {
        ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
        dropped_bytes_ += hi - lo;
      }
    }
  };
  for (MatrixView* w : mats) pack(*w);
}

size_t Model::resident_weight_bytes() const {
  return file_.file_size() - std::min(dropped_bytes_, file_.file_size()) + packed_bytes_;
}

size_t Model::weight_bytes() const {
  auto bytes = [](const MatrixView& w) {
    const size_t p = w.packed ? kernels::packed_size(w) : 0;  // 0 too under other kernels
    return p ? p : w.nbytes();
  };
  size_t n = bytes(output);
  for (const auto& l : layers)
    n += bytes(l.wq) + bytes(l.wk) + bytes(l.wv) + bytes(l.wo) + bytes(l.w_gate) +
         bytes(l.w_up) + bytes(l.w_down);
  return n;
}

}  // namespace tandem
