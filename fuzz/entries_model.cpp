// Entry functions of the model-level fuzz targets (see entries.hpp).
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "entries.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/hparams.hpp"
#include "tandem/model/model.hpp"
#include "tandem/model/tokenizer.hpp"

namespace tandem::fuzz {
namespace {

#define FUZZ_CHECK(cond)                                                                      \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw PropertyViolation(std::string("fuzz property failed: ") + #cond + " (" __FILE__ \
                              ":" + std::to_string(__LINE__) + ")");                          \
  } while (0)

// Runs f; an Error of kind BadInput or Resource is the expected refusal of bad input.
template <typename F>
bool accepted(F&& f) {
  try {
    f();
    return true;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Internal) throw;
    FUZZ_CHECK(e.what()[0] != '\0');  // every refusal says something
    return false;
  }
}

// Reads every byte of [p, p+n) so that ASan (heap images) or the MMU (mappings) sees
// an access outside the image.
volatile uint8_t g_sink;
void touch(const uint8_t* p, uint64_t n) {
  uint8_t x = 0;
  for (uint64_t i = 0; i < n; ++i) x ^= p[i];
  g_sink = x;
}

void walk(const gguf::File& f, const uint8_t* base, uint64_t size, bool touch_data) {
  FUZZ_CHECK(f.version() == 2 || f.version() == 3);
  FUZZ_CHECK(f.alignment() != 0 && (f.alignment() & (f.alignment() - 1)) == 0);
  for (const auto& kv : f.metadata()) {
    const std::string& key = kv.first;  // (clang 14 cannot capture structured bindings)
    const gguf::Value& v = kv.second;
    (void)v.to_string();
    (void)v.as_int();
    (void)v.as_float();
    if (const auto* s = v.as_string()) FUZZ_CHECK(v.type == gguf::ValueType::STRING && s->size() <= gguf::kMaxStringLength);
    if (const auto* a = v.as_array()) {
      FUZZ_CHECK(a->items.size() <= gguf::kMaxArrayLength);
      for (const auto& item : a->items) (void)item.to_string(2);
    }
    FUZZ_CHECK(f.find(key) != nullptr);
    accepted([&] { (void)f.get_string(key); });
    accepted([&] { (void)f.get_int(key); });
    accepted([&] { (void)f.get_float(key); });
    accepted([&] { (void)f.get_array(key); });
  }
  FUZZ_CHECK(f.tensors().size() <= gguf::kMaxTensorCount);
  for (const auto& t : f.tensors()) {
    FUZZ_CHECK(!t.ne.empty() && t.ne.size() <= size_t(gguf::kMaxDims));
    FUZZ_CHECK(t.nelements() > 0 && t.nelements() <= gguf::kMaxDimSize);
    FUZZ_CHECK(f.find_tensor(t.name) == &t);
    const uint8_t* p = f.tensor_data(t);
    FUZZ_CHECK(p >= base && uint64_t(p - base) <= size && t.nbytes <= size - uint64_t(p - base));
    FUZZ_CHECK(t.offset % f.alignment() == 0);
    if (touch_data) touch(p, 1), touch(p + t.nbytes - 1, 1);  // nbytes > 0: dims >= 1
  }
}

// Weight views of a loaded model must lie inside the file's bytes.
void check_inside(const uint8_t* base, uint64_t size, const void* p, uint64_t n) {
  const auto* q = static_cast<const uint8_t*>(p);
  FUZZ_CHECK(q != nullptr);
  FUZZ_CHECK(q >= base && uint64_t(q - base) <= size && n <= size - uint64_t(q - base));
  if (n > 0) touch(q, 1), touch(q + n - 1, 1);
}

void check_matrix(const uint8_t* base, uint64_t size, const MatrixView& m) {
  FUZZ_CHECK(m.rows > 0 && m.cols > 0);
  FUZZ_CHECK(m.row_stride == row_bytes(m.type, m.cols));
  check_inside(base, size, m.data, m.nbytes());
}

void check_vector(const uint8_t* base, uint64_t size, const float* v, int64_t n, bool required) {
  if (!v) {
    FUZZ_CHECK(!required);
    return;
  }
  check_inside(base, size, v, uint64_t(n) * sizeof(float));
}

// Encode/decode properties every tokenizer keeps, on any text.
void exercise_tokenizer(const Tokenizer& tok, std::string_view text, bool add_bos,
                        bool special, bool round_trip) {
  const int32_t n = tok.n_vocab();
  FUZZ_CHECK(n > 0);
  std::vector<int32_t> ids;
  if (!accepted([&] { ids = tok.encode(text, add_bos); })) return;
  for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < n);
  std::string back = tok.decode(ids, special);  // in-range ids: must not throw
  // Shipped vocabularies have every byte as a token: encoding loses nothing, except
  // that SentencePiece writes spaces as U+2581, so a U+2581 in the text comes back as
  // a space.
  if (round_trip && !special) {
    if (tok.model() == "llama") {
      std::string expect;
      for (size_t i = 0; i < text.size();) {
        if (text.substr(i, 3) == "\xE2\x96\x81") {
          expect += ' ';
          i += 3;
        } else {
          expect += text[i++];
        }
      }
      FUZZ_CHECK(back == expect);
    } else {
      FUZZ_CHECK(back == text);
    }
  }
}

// Decode of ids from the input: in range -> no throw; any out of range -> Error(BadInput).
void exercise_ids(const Tokenizer& tok, const uint8_t* data, size_t size, bool reduce,
                  bool special) {
  const int32_t n = tok.n_vocab();
  std::vector<int32_t> ids(size / 4);
  bool any_out = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, data + 4 * i, 4);
    ids[i] = reduce ? int32_t(u % uint32_t(n)) : int32_t(u);
    any_out |= ids[i] < 0 || ids[i] >= n;
  }
  bool threw = false;
  try {
    (void)tok.decode(ids, special);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::BadInput) throw;
    threw = true;
  }
  FUZZ_CHECK(threw == any_out);
  for (int32_t id : ids) {
    bool piece_threw = false;
    try {
      (void)tok.piece(id, special);
      (void)tok.is_eog(id);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::BadInput) throw;
      piece_threw = true;
    }
    FUZZ_CHECK(piece_threw == (id < 0 || id >= n));
  }
}

// Byte 0: bits 0-1 pick the operation, bit 2 add_bos, bit 3 special, bit 4 the second
// vocabulary (bpe only).
//   0: encode the rest as text, decode the ids (round trip checked)
//   1: decode the rest as little-endian u32 ids reduced mod V (must not throw)
//   2: decode the rest as raw i32 ids (throws exactly when one is out of range)
//   3: both 0 and 2 on the same bytes
void exercise_shipped(const Tokenizer& tok, const uint8_t* data, size_t size, bool round_trip) {
  if (size == 0) return;
  const uint8_t mode = data[0];
  const bool add_bos = mode & 4, special = mode & 8;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (mode & 3) {
    case 0: exercise_tokenizer(tok, text, add_bos, special, round_trip); break;
    case 1: exercise_ids(tok, data + 1, size - 1, true, special); break;
    case 2: exercise_ids(tok, data + 1, size - 1, false, special); break;
    case 3:
      exercise_tokenizer(tok, text, add_bos, special, round_trip);
      exercise_ids(tok, data + 1, size - 1, false, special);
      break;
  }
}

struct ShippedVocab {
  std::unique_ptr<gguf::File> file;
  std::unique_ptr<Tokenizer> tok;
};

const Tokenizer& shipped(const char* name) {
  static std::mutex mu;
  static std::vector<std::pair<std::string, ShippedVocab>> loaded;
  std::lock_guard<std::mutex> lock(mu);
  for (auto& [n, v] : loaded)
    if (n == name) return *v.tok;
  const std::string path = shared_dir() + "/vocab/" + name;
  ShippedVocab v;
  v.file = std::make_unique<gguf::File>(gguf::File::open(path));
  v.tok = std::make_unique<Tokenizer>(Tokenizer::from_gguf(*v.file));
  loaded.emplace_back(name, std::move(v));
  return *loaded.back().second.tok;
}

// A memfd that holds the current input, reachable by path.
class MemFile {
 public:
  MemFile() {
    fd_ = memfd_create("tandem-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error(std::string("memfd_create: ") + std::strerror(errno));
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  const std::string& write(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0 || ftruncate(fd_, off_t(size)) != 0)
      throw std::runtime_error(std::string("ftruncate: ") + std::strerror(errno));
    size_t done = 0;
    while (done < size) {
      const ssize_t k = pwrite(fd_, data + done, size - done, off_t(done));
      if (k <= 0) throw std::runtime_error(std::string("pwrite: ") + std::strerror(errno));
      done += size_t(k);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace

std::string shared_dir() {
  if (const char* e = std::getenv("TANDEM_SHARED"); e && *e) return e;
#ifdef TANDEM_SHARED_DIR
  return TANDEM_SHARED_DIR;
#else
  return "../shared";
#endif
}

void gguf_reader(const uint8_t* data, size_t size) {
  accepted([&] {
    const gguf::File f = gguf::File::from_memory(data, size, "fuzz");
    walk(f, data, size, true);
    // The readers of the layers above, on the same image.
    accepted([&] { (void)HParams::from_gguf(f); });
  });
}

void model_loader(const uint8_t* data, size_t size) {
  static MemFile mem;
  const std::string& path = mem.write(data, size);
  accepted([&] {
    const std::unique_ptr<Model> m = Model::load(path);
    const gguf::File& f = m->file();
    FUZZ_CHECK(f.file_size() == size);
    // The mapping's start, from any tensor (a loaded model has at least token_embd).
    FUZZ_CHECK(!f.tensors().empty());
    const auto& t0 = f.tensors().front();
    const uint8_t* base = f.tensor_data(t0) - f.data_offset() - t0.offset;
    walk(f, base, size, false);
    const HParams& h = m->hparams();
    check_matrix(base, size, m->tok_embd);
    check_matrix(base, size, m->output);
    FUZZ_CHECK(m->tok_embd.rows == h.n_vocab && m->tok_embd.cols == h.n_embd);
    check_vector(base, size, m->output_norm, h.n_embd, true);
    FUZZ_CHECK(int64_t(m->layers.size()) == h.n_layer);
    for (const auto& l : m->layers) {
      check_vector(base, size, l.attn_norm, h.n_embd, true);
      check_vector(base, size, l.ffn_norm, h.n_embd, true);
      check_vector(base, size, l.bq, h.q_dim(), false);
      check_vector(base, size, l.bk, h.kv_dim(), false);
      check_vector(base, size, l.bv, h.kv_dim(), false);
      for (const MatrixView* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
        check_matrix(base, size, *w);
    }
    (void)m->weight_bytes();
    if (const Tokenizer* tok = m->tokenizer()) {
      FUZZ_CHECK(tok->n_vocab() == h.n_vocab);
      for (int32_t id = 0; id < tok->n_vocab(); ++id) {
        (void)tok->piece(id, false);
        (void)tok->piece(id, true);
      }
      exercise_tokenizer(*tok, "Hello world! 123 \xC3\xBCn\xC3\xAF \xFF\n\t  x", true, false,
                         false);
      exercise_tokenizer(*tok, std::string_view(reinterpret_cast<const char*>(data),
                                                std::min<size_t>(size, 64)),
                         false, true, false);
    }
    f.check_unchanged();
  });
}

void tokenizer_spm(const uint8_t* data, size_t size) {
  exercise_shipped(shipped("ggml-vocab-llama-spm.gguf"), data, size, true);
}

void tokenizer_bpe(const uint8_t* data, size_t size) {
  const bool gpt2 = size > 0 && (data[0] & 16);
  exercise_shipped(shipped(gpt2 ? "ggml-vocab-gpt-2.gguf" : "ggml-vocab-llama-bpe.gguf"), data,
                   size, true);
}

}  // namespace tandem::fuzz
