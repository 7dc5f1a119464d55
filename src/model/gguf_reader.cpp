// GGUF reader: every count, length and offset is checked against the bytes that
// remain before it is used, so a hostile file can neither overflow nor make us
// allocate more than its own size.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "tandem/core/error.hpp"
#include "tandem/model/gguf.hpp"

namespace tandem::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian

class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t n, const std::string& path) : p_(p), n_(n), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return n_ - pos_; }

  [[noreturn]] void fault(const std::string& what) const {
    bad_input("{}: {} (at byte {})", path_, what, pos_);
  }

  void need(uint64_t k, const char* what) const {
    if (k > remaining()) fault(fmt::format("file ends inside {}", what));
  }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  // Bounds the array elements of the whole file (each costs memory once parsed).
  void count_elements(uint64_t n, const std::string& key) {
    elements_ += n;
    if (elements_ > kMaxMetadataElements)
      fault(fmt::format("metadata '{}': more than {} array elements in the file", key,
                        kMaxMetadataElements));
  }

  std::string read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    if (len > kMaxStringLength)
      fault(fmt::format("{} has length {} (limit {})", what, len, kMaxStringLength));
    need(len, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const uint8_t* p_;
  uint64_t n_;
  uint64_t pos_ = 0;
  uint64_t elements_ = 0;
  const std::string& path_;
};

// Smallest encoded size of one element of an array of type t (used to bound counts).
uint64_t min_elem_size(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: case ValueType::STRING: return 8;
    case ValueType::ARRAY: return 12;
  }
  return 1;
}

bool valid_value_type(uint32_t t) { return t <= uint32_t(ValueType::F64); }

Value read_value(Cursor& c, ValueType t, const std::string& key, uint64_t depth) {
  Value out;
  out.type = t;
  switch (t) {
    case ValueType::U8: out.v = uint64_t{c.read<uint8_t>(key.c_str())}; break;
    case ValueType::I8: out.v = int64_t{c.read<int8_t>(key.c_str())}; break;
    case ValueType::U16: out.v = uint64_t{c.read<uint16_t>(key.c_str())}; break;
    case ValueType::I16: out.v = int64_t{c.read<int16_t>(key.c_str())}; break;
    case ValueType::U32: out.v = uint64_t{c.read<uint32_t>(key.c_str())}; break;
    case ValueType::I32: out.v = int64_t{c.read<int32_t>(key.c_str())}; break;
    case ValueType::U64: out.v = c.read<uint64_t>(key.c_str()); break;
    case ValueType::I64: out.v = c.read<int64_t>(key.c_str()); break;
    case ValueType::F32: out.v = double{c.read<float>(key.c_str())}; break;
    case ValueType::F64: out.v = c.read<double>(key.c_str()); break;
    case ValueType::BOOL: {
      const uint8_t b = c.read<uint8_t>(key.c_str());
      if (b > 1) c.fault(fmt::format("metadata '{}': bool value {} is not 0 or 1", key, b));
      out.v = b == 1;
      break;
    }
    case ValueType::STRING: out.v = c.read_string(key.c_str()); break;
    case ValueType::ARRAY: {
      if (depth >= kMaxArrayDepth)
        c.fault(fmt::format("metadata '{}': arrays nested deeper than {}", key, kMaxArrayDepth));
      const uint32_t et = c.read<uint32_t>(key.c_str());
      if (!valid_value_type(et))
        c.fault(fmt::format("metadata '{}': unknown array element type {}", key, et));
      const uint64_t n = c.read<uint64_t>(key.c_str());
      const auto elem = ValueType(et);
      if (n > c.remaining() / min_elem_size(elem))
        c.fault(fmt::format("metadata '{}': array count {} exceeds the file size", key, n));
      if (n > kMaxArrayLength)
        c.fault(fmt::format("metadata '{}': array count {} exceeds the limit {}", key, n,
                            kMaxArrayLength));
      c.count_elements(n, key);
      Array a;
      a.elem = elem;
      a.items.reserve(n);
      for (uint64_t k = 0; k < n; ++k) a.items.push_back(read_value(c, elem, key, depth + 1));
      out.v = std::move(a);
      break;
    }
  }
  return out;
}

}  // namespace

File::File(File&& o) noexcept { *this = std::move(o); }

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (mapped_ && data_) munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    mapped_ = o.mapped_;
    dev_ = o.dev_;
    ino_ = o.ino_;
    version_ = o.version_;
    alignment_ = o.alignment_;
    data_offset_ = o.data_offset_;
    kv_ = std::move(o.kv_);
    tensors_ = std::move(o.tensors_);
    o.data_ = nullptr;
    o.mapped_ = false;
  }
  return *this;
}

File::~File() {
  if (mapped_ && data_) munmap(const_cast<uint8_t*>(data_), size_);
}

void File::fault(const std::string& what) const { bad_input("{}: {}", path_, what); }

File File::open(const std::string& path) {
  File f;
  f.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) bad_input("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    bad_input("{}: cannot stat: {}", path, std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    bad_input("{}: not a regular file", path);
  }
  f.size_ = uint64_t(st.st_size);
  f.dev_ = st.st_dev;
  f.ino_ = st.st_ino;
  if (f.size_ < 24) {
    ::close(fd);
    bad_input("{}: too small for a GGUF header ({} bytes)", path, f.size_);
  }
  void* p = mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) bad_input("{}: cannot map: {}", path, std::strerror(e));
  f.data_ = static_cast<const uint8_t*>(p);
  f.mapped_ = true;
  f.parse();
  return f;
}

File File::from_memory(const uint8_t* data, size_t size, const std::string& label) {
  File f;
  f.path_ = label;
  f.data_ = data;
  f.size_ = size;
  f.parse();
  return f;
}

void File::parse() {
  Cursor c(data_, size_, path_);
  const uint32_t magic = c.read<uint32_t>("header");
  if (magic != kMagic) fault("not a GGUF file (bad magic)");
  version_ = c.read<uint32_t>("header");
  if (version_ != 2 && version_ != 3)
    fault(fmt::format("unsupported GGUF version {} (supported: 2, 3)", version_));
  const uint64_t n_tensors = c.read<uint64_t>("header");
  const uint64_t n_kv = c.read<uint64_t>("header");
  if (n_tensors > kMaxTensorCount)
    fault(fmt::format("tensor count {} exceeds the limit {}", n_tensors, kMaxTensorCount));
  if (n_kv > kMaxMetadataCount)
    fault(fmt::format("metadata count {} exceeds the limit {}", n_kv, kMaxMetadataCount));
  // Each KV needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info 8+4+8+4+8.
  if (n_kv > c.remaining() / 13) fault(fmt::format("metadata count {} exceeds the file size", n_kv));
  if (n_tensors > c.remaining() / 32)
    fault(fmt::format("tensor count {} exceeds the file size", n_tensors));

  std::unordered_set<std::string> keys;
  kv_.reserve(n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.read_string("metadata key");
    if (!keys.insert(key).second) c.fault(fmt::format("duplicate metadata key '{}'", key));
    const uint32_t t = c.read<uint32_t>(key.c_str());
    if (!valid_value_type(t)) c.fault(fmt::format("metadata '{}': unknown value type {}", key, t));
    Value v = read_value(c, ValueType(t), key, 0);
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const Value* a = find("general.alignment")) {
    const auto al = a->as_int();
    if (a->type != ValueType::U32 || !al || *al == 0 || (*al & (*al - 1)) != 0)
      fault("metadata 'general.alignment' must be a u32 power of two");
    alignment_ = uint64_t(*al);
  }

  std::unordered_set<std::string> names;
  tensors_.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t;
    t.name = c.read_string("tensor name");
    if (!names.insert(t.name).second) c.fault(fmt::format("duplicate tensor '{}'", t.name));
    const uint32_t n_dims = c.read<uint32_t>("tensor info");
    if (n_dims == 0 || n_dims > uint32_t(kMaxDims))
      c.fault(fmt::format("tensor '{}': {} dimensions (1..{} supported)", t.name, n_dims, kMaxDims));
    int64_t count = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("tensor info");
      if (ne == 0 || ne > uint64_t(kMaxDimSize))
        c.fault(fmt::format("tensor '{}': dimension {} has size {}", t.name, d, ne));
      if (count > kMaxDimSize / int64_t(ne))
        c.fault(fmt::format("tensor '{}': element count overflows", t.name));
      count *= int64_t(ne);
      t.ne.push_back(int64_t(ne));
    }
    const uint32_t type = c.read<uint32_t>("tensor info");
    const auto ti = dtype_info(type);
    if (!ti) c.fault(fmt::format("tensor '{}': unsupported tensor type {}", t.name, type));
    t.type = ti->type;
    if (t.ne[0] % ti->block_size != 0)
      c.fault(fmt::format("tensor '{}': row length {} is not a multiple of the {} block size {}",
                          t.name, t.ne[0], ti->name, ti->block_size));
    t.nbytes = uint64_t(count / ti->block_size) * ti->block_bytes;
    t.offset = c.read<uint64_t>("tensor info");
    if (t.offset % alignment_ != 0)
      c.fault(fmt::format("tensor '{}': offset {} is not a multiple of the alignment {}", t.name,
                          t.offset, alignment_));
    tensors_.push_back(std::move(t));
  }

  const uint64_t pos = c.pos();
  data_offset_ = (pos + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_offset_ > size_) fault("file ends before the tensor data section");
  const uint64_t data_size = size_ >= data_offset_ ? size_ - data_offset_ : 0;
  for (const auto& t : tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fault(fmt::format("tensor '{}': data [{}, {}) lies past the end of the file (data section "
                        "has {} bytes)",
                        t.name, t.offset, t.offset + t.nbytes, data_size));
  }
}

const Value* File::find(std::string_view key) const {
  for (const auto& [k, v] : kv_)
    if (k == key) return &v;
  return nullptr;
}

void File::forget_arrays(std::string_view prefix) {
  std::erase_if(kv_, [&](const auto& e) {
    return std::string_view(e.first).starts_with(prefix) && e.second.as_array() != nullptr;
  });
  kv_.shrink_to_fit();
}

std::string File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) fault(fmt::format("missing metadata key '{}'", key));
  if (const auto* s = v->as_string()) return *s;
  fault(fmt::format("metadata '{}' should be a string, is {}", key, value_type_name(v->type)));
}

int64_t File::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (!v) fault(fmt::format("missing metadata key '{}'", key));
  if (auto i = v->as_int()) return *i;
  fault(fmt::format("metadata '{}' should be an integer, is {}", key, value_type_name(v->type)));
}

double File::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v) fault(fmt::format("missing metadata key '{}'", key));
  if (auto d = v->as_float()) return *d;
  fault(fmt::format("metadata '{}' should be a number, is {}", key, value_type_name(v->type)));
}

const Array& File::get_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) fault(fmt::format("missing metadata key '{}'", key));
  if (const auto* a = v->as_array()) return *a;
  fault(fmt::format("metadata '{}' should be an array, is {}", key, value_type_name(v->type)));
}

std::optional<int64_t> File::find_int(std::string_view key) const {
  if (!find(key)) return std::nullopt;
  return get_int(key);
}

std::optional<double> File::find_float(std::string_view key) const {
  if (!find(key)) return std::nullopt;
  return get_float(key);
}

std::optional<std::string> File::find_string(std::string_view key) const {
  if (!find(key)) return std::nullopt;
  return get_string(key);
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

void File::check_unchanged() const {
  if (!mapped_) return;
  struct stat st {};
  if (stat(path_.c_str(), &st) != 0) fault("file was removed while in use");
  if (st.st_dev != dev_ || st.st_ino != ino_) fault("file was replaced while in use");
  if (uint64_t(st.st_size) != size_)
    fault(fmt::format("file changed size while in use ({} -> {} bytes)", size_, st.st_size));
}

}  // namespace tandem::gguf
