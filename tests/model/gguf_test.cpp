// GGUF writer/reader round trips: every metadata value type, every tensor type and
// rank, custom alignment, version 2, and the typed accessors.
#include "tandem/model/gguf.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>

#include "support/test_paths.hpp"
#include "tandem/core/error.hpp"

using namespace tandem;
using gguf::Value;
using gguf::ValueType;

namespace {

bool same_value(const Value& a, const Value& b) {
  if (a.type != b.type || a.v.index() != b.v.index()) return false;
  if (const auto* x = a.as_array()) {
    const auto* y = b.as_array();
    if (x->elem != y->elem || x->items.size() != y->items.size()) return false;
    for (size_t i = 0; i < x->items.size(); ++i)
      if (!same_value(x->items[i], y->items[i])) return false;
    return true;
  }
  if (const auto* s = a.as_string()) return *s == *b.as_string();
  if (const auto* d = std::get_if<double>(&a.v)) {  // compare bits (NaN, -0)
    const double e = std::get<double>(b.v);
    return std::memcmp(d, &e, sizeof e) == 0;
  }
  if (const auto* t = std::get_if<bool>(&a.v)) return *t == std::get<bool>(b.v);
  if (const auto* u = std::get_if<uint64_t>(&a.v)) return *u == std::get<uint64_t>(b.v);
  return std::get<int64_t>(a.v) == std::get<int64_t>(b.v);
}

Value uval(ValueType t, uint64_t x) { return {t, x}; }
Value ival(ValueType t, int64_t x) { return {t, x}; }
Value fval(ValueType t, double x) { return {t, x}; }

// Every scalar type, with its extreme values.
std::vector<std::pair<std::string, Value>> all_scalars() {
  return {
      {"t.u8", uval(ValueType::U8, 255)},
      {"t.i8", ival(ValueType::I8, -128)},
      {"t.u16", uval(ValueType::U16, 65535)},
      {"t.i16", ival(ValueType::I16, -32768)},
      {"t.u32", Value::u32(4294967295u)},
      {"t.i32", Value::i32(std::numeric_limits<int32_t>::min())},
      {"t.f32", Value::f32(-1.5e-7f)},
      {"t.bool.true", Value::boolean(true)},
      {"t.bool.false", Value::boolean(false)},
      {"t.string", Value::str("h\xc3\xa9llo\nworld")},
      {"t.string.empty", Value::str("")},
      {"t.u64", Value::u64(std::numeric_limits<uint64_t>::max())},
      {"t.i64", ival(ValueType::I64, std::numeric_limits<int64_t>::min())},
      {"t.f64", fval(ValueType::F64, 0.1)},
      {"t.f64.nan", fval(ValueType::F64, std::numeric_limits<double>::quiet_NaN())},
      {"t.f32.negzero", Value::f32(-0.0f)},
  };
}

std::vector<std::pair<std::string, Value>> all_metadata() {
  auto kv = all_scalars();
  // An array of each scalar type (three copies of the scalar).
  for (const auto& [k, v] : all_scalars())
    kv.emplace_back("arr." + k.substr(2), Value::array(v.type, {v, v, v}));
  kv.emplace_back("arr.empty", Value::array(ValueType::I32, {}));
  kv.emplace_back("arr.empty_strings", Value::array(ValueType::STRING, {}));
  kv.emplace_back("arr.nested",
                  Value::array(ValueType::ARRAY,
                               {Value::array(ValueType::U8, {uval(ValueType::U8, 1)}),
                                Value::array(ValueType::STRING, {Value::str("a"), Value::str("")}),
                                Value::array(ValueType::F32, {}),
                                Value::array(ValueType::ARRAY,
                                             {Value::array(ValueType::I64,
                                                           {ival(ValueType::I64, -5)})})}));
  return kv;
}

struct TensorSpec {
  std::string name;
  DType type;
  std::vector<int64_t> ne;
};

std::vector<TensorSpec> all_tensors() {
  return {
      {"f32.1d", DType::F32, {7}},
      {"f16.2d", DType::F16, {5, 3}},
      {"bf16.3d", DType::BF16, {4, 3, 2}},
      {"q8_0.4d", DType::Q8_0, {64, 2, 1, 3}},
      {"q4_0.2d", DType::Q4_0, {32, 5}},
      {"i8.1d", DType::I8, {3}},
      {"i16.2d", DType::I16, {1, 1}},
      {"i32.1d", DType::I32, {9}},
      {"f32.big", DType::F32, {1000}},
  };
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = uint8_t(rng());
  return b;
}

int64_t count(const std::vector<int64_t>& ne) {
  int64_t n = 1;
  for (auto d : ne) n *= d;
  return n;
}

std::string write_all(uint32_t version, uint32_t alignment, const std::string& file) {
  gguf::Writer w(version);
  for (const auto& [k, v] : all_metadata()) w.set(k, v);
  if (alignment) w.set("general.alignment", Value::u32(alignment));
  uint32_t seed = 1;
  for (const auto& t : all_tensors())
    w.add_tensor(t.name, t.type, t.ne, random_bytes(row_bytes(t.type, count(t.ne)), seed++));
  const std::string path = test::temp_dir() + "/" + file;
  w.write(path);
  return path;
}

void check_all(const gguf::File& f, uint32_t version, uint64_t alignment) {
  EXPECT_EQ(f.version(), version);
  EXPECT_EQ(f.alignment(), alignment);
  const auto expect = all_metadata();
  const size_t extra = f.find("general.alignment") ? 1 : 0;
  ASSERT_EQ(f.metadata().size(), expect.size() + extra);
  for (size_t i = 0; i < expect.size(); ++i) {
    EXPECT_EQ(f.metadata()[i].first, expect[i].first);
    EXPECT_TRUE(same_value(f.metadata()[i].second, expect[i].second))
        << expect[i].first << ": read " << f.metadata()[i].second.to_string() << ", wrote "
        << expect[i].second.to_string();
  }
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  const auto tensors = all_tensors();
  ASSERT_EQ(f.tensors().size(), tensors.size());
  uint32_t seed = 1;
  uint64_t prev_end = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = f.tensors()[i];
    EXPECT_EQ(t.name, tensors[i].name);
    EXPECT_EQ(t.type, tensors[i].type);
    EXPECT_EQ(t.ne, tensors[i].ne);
    EXPECT_EQ(t.nelements(), count(tensors[i].ne));
    EXPECT_EQ(t.nbytes, row_bytes(t.type, t.nelements()));
    EXPECT_EQ(t.offset % alignment, 0u) << t.name;
    EXPECT_GE(t.offset, prev_end) << t.name;
    prev_end = t.offset + t.nbytes;
    EXPECT_EQ((f.data_offset() + t.offset) % alignment, 0u);
    const auto bytes = random_bytes(t.nbytes, seed++);
    EXPECT_EQ(std::memcmp(f.tensor_data(t), bytes.data(), bytes.size()), 0) << t.name;
    EXPECT_EQ(f.find_tensor(t.name), &t);
  }
  EXPECT_LE(f.data_offset() + prev_end, f.file_size());
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST(GgufRoundTrip, Version3DefaultAlignment) {
  const auto path = write_all(3, 0, "v3.gguf");
  check_all(gguf::File::open(path), 3, 32);
}

TEST(GgufRoundTrip, Version3Alignment64) {
  const auto path = write_all(3, 64, "v3-a64.gguf");
  const auto f = gguf::File::open(path);
  check_all(f, 3, 64);
  EXPECT_EQ(f.get_int("general.alignment"), 64);
}

TEST(GgufRoundTrip, Version2) {
  const auto path = write_all(2, 0, "v2.gguf");
  check_all(gguf::File::open(path), 2, 32);
}

TEST(GgufRoundTrip, LargeAlignmentAndFromMemory) {
  const auto path = write_all(3, 4096, "a4096.gguf");
  const auto bytes = read_bytes(path);
  const auto f = gguf::File::from_memory(bytes.data(), bytes.size(), "in-memory");
  check_all(f, 3, 4096);
  EXPECT_EQ(f.path(), "in-memory");
}

TEST(GgufRoundTrip, NoTensorsNoMetadata) {
  gguf::Writer w;
  const std::string path = test::temp_dir() + "/empty.gguf";
  w.write(path);
  const auto f = gguf::File::open(path);
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.file_size(), 32u);  // 24-byte header padded to the alignment
}

TEST(GgufWriter, SetReplacesInPlaceAndCopyMetadataFilters) {
  gguf::Writer w;
  w.set("a", Value::u32(1));
  w.set("tok.x", Value::str("x"));
  w.set("b", Value::u32(2));
  w.set("a", Value::str("replaced"));
  const std::string path = test::temp_dir() + "/set.gguf";
  w.write(path);
  const auto f = gguf::File::open(path);
  ASSERT_EQ(f.metadata().size(), 3u);
  EXPECT_EQ(f.metadata()[0].first, "a");
  EXPECT_EQ(f.get_string("a"), "replaced");

  gguf::Writer w2;
  w2.copy_metadata(f, "tok.");
  const std::string path2 = test::temp_dir() + "/copy.gguf";
  w2.write(path2);
  const auto f2 = gguf::File::open(path2);
  ASSERT_EQ(f2.metadata().size(), 1u);
  EXPECT_EQ(f2.get_string("tok.x"), "x");
  EXPECT_FALSE(std::filesystem::exists(path2 + ".tmp"));
}

TEST(GgufWriter, RejectsWrongTensorByteCount) {
  gguf::Writer w;
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, std::vector<uint8_t>(15)), Error);
  EXPECT_THROW(w.add_tensor("q", DType::Q4_0, {16}, std::vector<uint8_t>(9)), Error);
  w.add_tensor("t", DType::F32, {4}, std::vector<uint8_t>(16));
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, std::vector<uint8_t>(16)), Error);
}

TEST(GgufFile, TypedAccessors) {
  const auto f = gguf::File::open(write_all(3, 0, "acc.gguf"));
  EXPECT_EQ(f.get_int("t.u8"), 255);
  EXPECT_EQ(f.get_int("t.i8"), -128);
  EXPECT_EQ(f.get_int("t.u32"), 4294967295);
  EXPECT_EQ(f.get_int("t.i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.get_float("t.u16"), 65535.0);
  EXPECT_EQ(f.get_float("t.f32"), double(-1.5e-7f));
  EXPECT_EQ(f.get_string("t.string.empty"), "");
  EXPECT_EQ(f.get_array("arr.u8").items.size(), 3u);
  EXPECT_EQ(f.find_int("nope"), std::nullopt);
  EXPECT_EQ(f.find_string("t.string"), std::optional<std::string>("h\xc3\xa9llo\nworld"));
  EXPECT_FALSE(f.find("t.u64")->as_int());  // 2^64-1 does not fit int64
  auto expect_bad = [&](auto fn, const char* what) {
    try {
      fn();
      ADD_FAILURE() << "no error: " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find(f.path()), std::string::npos) << e.what();
    }
  };
  expect_bad([&] { f.get_int("missing.key"); }, "missing key");
  expect_bad([&] { f.get_int("t.string"); }, "string as int");
  expect_bad([&] { f.get_int("t.u64"); }, "u64 out of range");
  expect_bad([&] { f.get_string("t.u8"); }, "int as string");
  expect_bad([&] { f.get_float("t.bool.true"); }, "bool as float");
  expect_bad([&] { f.get_array("t.f64"); }, "float as array");
  expect_bad([&] { f.find_int("t.string"); }, "find_int of a string");
}

TEST(GgufFile, ValueToString) {
  EXPECT_EQ(Value::u32(7).to_string(), "7");
  EXPECT_EQ(Value::i32(-7).to_string(), "-7");
  EXPECT_EQ(Value::boolean(true).to_string(), "true");
  EXPECT_EQ(Value::str("a\nb").to_string(), "\"a\\nb\"");
  const auto arr = Value::array(ValueType::U32, {Value::u32(1), Value::u32(2), Value::u32(3)});
  EXPECT_EQ(arr.to_string(2), "[3 x u32: 1, 2, ...]");
  EXPECT_EQ(gguf::value_type_name(ValueType::F64), "f64");
}

TEST(GgufFile, DetectsChangeAfterOpen) {
  const std::string path = write_all(3, 0, "change.gguf");
  const auto f = gguf::File::open(path);
  EXPECT_NO_THROW(f.check_unchanged());
  const std::string other = write_all(3, 64, "change2.gguf");
  std::filesystem::rename(other, path);  // replaced
  EXPECT_THROW(f.check_unchanged(), Error);
}
