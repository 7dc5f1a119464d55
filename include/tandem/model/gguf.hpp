#pragma once
// GGUF files (versions 2 and 3): a reader that memory-maps the file and validates
// every count, length, shape and offset before use, and a writer.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "tandem/core/dtype.hpp"

namespace tandem::gguf {

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view value_type_name(ValueType t);

struct Value;
struct Array {
  ValueType elem = ValueType::U8;  // element type (ARRAY for nested arrays)
  std::vector<Value> items;
};

// One metadata value. Integers keep their exact value (unsigned in u, signed in i),
// floats are widened to double; the declared GGUF type is kept in `type`.
struct Value {
  ValueType type = ValueType::U8;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> v;

  static Value u32(uint32_t x) { return {ValueType::U32, uint64_t{x}}; }
  static Value i32(int32_t x) { return {ValueType::I32, int64_t{x}}; }
  static Value u64(uint64_t x) { return {ValueType::U64, x}; }
  static Value f32(float x) { return {ValueType::F32, double{x}}; }
  static Value boolean(bool x) { return {ValueType::BOOL, x}; }
  static Value str(std::string s) { return {ValueType::STRING, std::move(s)}; }
  static Value array(ValueType elem, std::vector<Value> items) {
    return {ValueType::ARRAY, Array{elem, std::move(items)}};
  }

  bool is_integer() const;
  bool is_float() const { return type == ValueType::F32 || type == ValueType::F64; }
  // Converting accessors; nullopt when the value is not of a compatible kind or out
  // of range for the requested type.
  std::optional<int64_t> as_int() const;
  std::optional<double> as_float() const;  // integers convert too
  const std::string* as_string() const;
  const Array* as_array() const;
  // Human-readable rendering (arrays abbreviated after `max_items`).
  std::string to_string(size_t max_items = 8) const;
};

struct TensorInfo {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> ne;  // dims, ne[0] innermost (columns of a row-major matrix)
  uint64_t offset = 0;      // from the start of the data section
  uint64_t nbytes = 0;
  int64_t nelements() const;
};

// Limits checked on input (documented in README.md).
inline constexpr uint64_t kMaxStringLength = 1ull << 26;   // 64 MiB
inline constexpr uint64_t kMaxArrayDepth = 4;
inline constexpr uint64_t kMaxArrayLength = 1ull << 24;     // elements in one array
inline constexpr uint64_t kMaxMetadataElements = 1ull << 26;  // array elements in all
inline constexpr uint64_t kMaxTensorCount = 1ull << 20;
inline constexpr uint64_t kMaxMetadataCount = 1ull << 20;
inline constexpr int kMaxDims = 4;
inline constexpr int64_t kMaxDimSize = int64_t{1} << 40;

class File {
 public:
  // Opens and validates `path`; throws Error(BadInput, "<path>: <fault>") on any
  // malformed content. Tensor data stays memory-mapped (never read whole).
  static File open(const std::string& path);
  // Parses an in-memory image (not copied; must outlive the File). `label` names it
  // in error messages.
  static File from_memory(const uint8_t* data, size_t size, const std::string& label);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t file_size() const { return size_; }
  // Whether the data is the file's read-only private mapping (File::open).
  bool mapped() const { return mapped_; }
  // The whole image: file_size() bytes from its first (the mapping when mapped()).
  const uint8_t* bytes() const { return data_; }

  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const Value* find(std::string_view key) const;
  // Forgets every array-valued key whose name starts with `prefix` (a reader that has
  // taken its own copy, e.g. the tokenizer's vocabulary, frees the parsed values).
  void forget_arrays(std::string_view prefix);

  // Typed getters: throw Error(BadInput) naming the file and key when the key is
  // missing or has the wrong type.
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  const Array& get_array(std::string_view key) const;
  std::optional<int64_t> find_int(std::string_view key) const;
  std::optional<double> find_float(std::string_view key) const;
  std::optional<std::string> find_string(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;
  // Start of a tensor's bytes (inside the mapping).
  const uint8_t* tensor_data(const TensorInfo& t) const { return data_ + data_offset_ + t.offset; }
  uint64_t data_offset() const { return data_offset_; }

  // Throws Error(BadInput) if the file on disk changed size or identity since open
  // (truncated or replaced while in use).
  void check_unchanged() const;

 private:
  File() = default;
  void parse();
  [[noreturn]] void fault(const std::string& what) const;

  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;
  uint64_t dev_ = 0, ino_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<TensorInfo> tensors_;
};

class Writer {
 public:
  explicit Writer(uint32_t version = 3) : version_(version) {}

  // Sets a metadata key (replacing an earlier value, keeping its position).
  void set(const std::string& key, Value v);
  // Copies the metadata of another file (all keys starting with `prefix`).
  void copy_metadata(const File& f, std::string_view prefix = "");
  // Adds a tensor; `data` must hold exactly the tensor's bytes for its type and dims.
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> ne,
                  std::vector<uint8_t> data);
  // general.alignment when set (default 32).
  uint64_t alignment() const;

  // Writes to `path` atomically (a temporary file renamed at the end).
  void write(const std::string& path) const;

 private:
  struct PendingTensor {
    TensorInfo info;
    std::vector<uint8_t> data;
  };
  uint32_t version_;
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace tandem::gguf
