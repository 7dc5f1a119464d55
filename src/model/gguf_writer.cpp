#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "tandem/core/error.hpp"
#include "tandem/model/gguf.hpp"

namespace tandem::gguf {
namespace {

class Out {
 public:
  explicit Out(std::FILE* f, const std::string& path) : f_(f), path_(path) {}
  void bytes(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) fail(ErrorKind::Internal, "{}: write failed", path_);
    pos_ += n;
  }
  template <typename T>
  void put(T v) { bytes(&v, sizeof v); }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad_to(uint64_t align) {
    static const uint8_t zeros[256] = {};
    while (pos_ % align) bytes(zeros, std::min<uint64_t>(align - pos_ % align, sizeof zeros));
  }
  uint64_t pos() const { return pos_; }

 private:
  std::FILE* f_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

void write_value(Out& o, const Value& v, ValueType t) {
  auto i = [&] { return v.as_int().value_or(0); };
  switch (t) {
    case ValueType::U8: o.put<uint8_t>(uint8_t(i())); break;
    case ValueType::I8: o.put<int8_t>(int8_t(i())); break;
    case ValueType::U16: o.put<uint16_t>(uint16_t(i())); break;
    case ValueType::I16: o.put<int16_t>(int16_t(i())); break;
    case ValueType::U32: o.put<uint32_t>(uint32_t(i())); break;
    case ValueType::I32: o.put<int32_t>(int32_t(i())); break;
    case ValueType::U64: o.put<uint64_t>(std::get<uint64_t>(v.v)); break;
    case ValueType::I64: o.put<int64_t>(std::get<int64_t>(v.v)); break;
    case ValueType::F32: o.put<float>(float(v.as_float().value_or(0))); break;
    case ValueType::F64: o.put<double>(v.as_float().value_or(0)); break;
    case ValueType::BOOL: o.put<uint8_t>(std::get<bool>(v.v) ? 1 : 0); break;
    case ValueType::STRING: o.str(std::get<std::string>(v.v)); break;
    case ValueType::ARRAY: {
      const auto& a = std::get<Array>(v.v);
      o.put<uint32_t>(uint32_t(a.elem));
      o.put<uint64_t>(a.items.size());
      for (const auto& item : a.items) write_value(o, item, a.elem);
      break;
    }
  }
}

}  // namespace

void Writer::set(const std::string& key, Value v) {
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void Writer::copy_metadata(const File& f, std::string_view prefix) {
  for (const auto& [k, v] : f.metadata())
    if (k.rfind(prefix, 0) == 0) set(k, v);
}

uint64_t Writer::alignment() const {
  for (const auto& [k, v] : kv_)
    if (k == "general.alignment") return uint64_t(v.as_int().value_or(32));
  return 32;
}

void Writer::add_tensor(const std::string& name, DType type, std::vector<int64_t> ne,
                        std::vector<uint8_t> data) {
  TensorInfo t;
  t.name = name;
  t.type = type;
  t.ne = std::move(ne);
  TD_CHECK(!t.ne.empty() && t.ne.size() <= size_t(kMaxDims));
  t.nbytes = row_bytes(type, t.nelements());
  TD_CHECK(data.size() == t.nbytes);
  for (const auto& p : tensors_) TD_CHECK(p.info.name != name);
  tensors_.push_back({std::move(t), std::move(data)});
}

void Writer::write(const std::string& path) const {
  const uint64_t align = alignment();
  TD_CHECK(align > 0 && (align & (align - 1)) == 0);
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) bad_input("{}: cannot create: {}", path, std::strerror(errno));
  try {
    Out o(f, tmp);
    o.put<uint32_t>(0x46554747);
    o.put<uint32_t>(version_);
    o.put<uint64_t>(tensors_.size());
    o.put<uint64_t>(kv_.size());
    for (const auto& [k, v] : kv_) {
      o.str(k);
      o.put<uint32_t>(uint32_t(v.type));
      write_value(o, v, v.type);
    }
    uint64_t offset = 0;
    for (const auto& p : tensors_) {
      o.str(p.info.name);
      o.put<uint32_t>(uint32_t(p.info.ne.size()));
      for (auto d : p.info.ne) o.put<uint64_t>(uint64_t(d));
      o.put<uint32_t>(uint32_t(p.info.type));
      o.put<uint64_t>(offset);
      offset += (p.info.nbytes + align - 1) / align * align;
    }
    o.pad_to(align);
    for (const auto& p : tensors_) {
      o.bytes(p.data.data(), p.data.size());
      o.pad_to(align);
    }
    if (std::fclose(f) != 0) fail(ErrorKind::Internal, "{}: close failed", tmp);
    f = nullptr;
    std::filesystem::rename(tmp, path);
  } catch (...) {
    if (f) std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
}

}  // namespace tandem::gguf
