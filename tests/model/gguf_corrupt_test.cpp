// Bad-input battery: corrupted copies of a valid model must make Model::load throw
// Error(BadInput) naming the file: no crash, no hang, no large allocation. Each load
// runs in a forked child under an address-space cap and an alarm. A subset also runs
// `tandem info`, which must exit 2 with one line on stderr naming the file.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>

#include "support/test_paths.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/model.hpp"
#include "tandem/model/synth.hpp"

// AddressSanitizer changes two things the child guard relies on: its operator new reports
// "out of memory" and ends the process instead of throwing std::bad_alloc (whatever
// allocator_may_return_null says), and its SEGV handler turns a crash into a report and
// an abort. Under ASan the child hands the report's ERROR line to the parent instead.
#if defined(__SANITIZE_ADDRESS__)
#define TANDEM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TANDEM_TEST_ASAN 1
#endif
#endif
#ifdef TANDEM_TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

using namespace tandem;
using gguf::Value;
using gguf::ValueType;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();
constexpr uint64_t k2p63 = uint64_t{1} << 63;

// ---- where each field of a (valid) file lies -------------------------------------

struct KvField {
  std::string key;
  size_t key_len_pos = 0, type_pos = 0, value_pos = 0;
  uint32_t type = 0;
};

struct TensorField {
  std::string name;
  size_t name_len_pos = 0, name_pos = 0, ndims_pos = 0, type_pos = 0, offset_pos = 0;
  std::vector<size_t> dim_pos;
  uint64_t offset = 0, nbytes = 0;
};

struct Layout {
  std::vector<KvField> kv;
  std::vector<TensorField> tensors;
  size_t infos_end = 0;
  uint64_t data_offset = 0;
  uint64_t data_end = 0;  // data_offset + end of the last tensor's bytes

  const KvField& key(const std::string& k) const {
    for (const auto& f : kv)
      if (f.key == k) return f;
    throw std::runtime_error("test layout: no key " + k);
  }
  const TensorField& tensor(const std::string& n) const {
    for (const auto& t : tensors)
      if (t.name == n) return t;
    throw std::runtime_error("test layout: no tensor " + n);
  }
};

template <typename T>
T get(const Bytes& b, size_t pos) {
  T v;
  std::memcpy(&v, b.data() + pos, sizeof v);
  return v;
}

template <typename T>
void put(Bytes& b, size_t pos, T v) {
  std::memcpy(b.data() + pos, &v, sizeof v);
}

size_t skip_value(const Bytes& b, size_t pos, uint32_t type) {
  switch (ValueType(type)) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return pos + 1;
    case ValueType::U16: case ValueType::I16: return pos + 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return pos + 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return pos + 8;
    case ValueType::STRING: return pos + 8 + get<uint64_t>(b, pos);
    case ValueType::ARRAY: {
      const auto elem = get<uint32_t>(b, pos);
      const auto n = get<uint64_t>(b, pos + 4);
      pos += 12;
      for (uint64_t i = 0; i < n; ++i) pos = skip_value(b, pos, elem);
      return pos;
    }
  }
  throw std::runtime_error("test layout: bad type");
}

Layout parse_layout(const Bytes& b) {
  Layout l;
  const auto n_tensors = get<uint64_t>(b, 8), n_kv = get<uint64_t>(b, 16);
  size_t pos = 24;
  uint64_t alignment = 32;
  for (uint64_t i = 0; i < n_kv; ++i) {
    KvField f;
    f.key_len_pos = pos;
    const auto len = get<uint64_t>(b, pos);
    f.key.assign(reinterpret_cast<const char*>(b.data() + pos + 8), len);
    f.type_pos = pos + 8 + len;
    f.type = get<uint32_t>(b, f.type_pos);
    f.value_pos = f.type_pos + 4;
    pos = skip_value(b, f.value_pos, f.type);
    if (f.key == "general.alignment") alignment = get<uint32_t>(b, f.value_pos);
    l.kv.push_back(f);
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorField t;
    t.name_len_pos = pos;
    t.name_pos = pos + 8;
    const auto len = get<uint64_t>(b, pos);
    t.name.assign(reinterpret_cast<const char*>(b.data() + t.name_pos), len);
    t.ndims_pos = t.name_pos + len;
    const auto nd = get<uint32_t>(b, t.ndims_pos);
    pos = t.ndims_pos + 4;
    int64_t count = 1;
    for (uint32_t d = 0; d < nd; ++d, pos += 8) {
      t.dim_pos.push_back(pos);
      count *= int64_t(get<uint64_t>(b, pos));
    }
    t.type_pos = pos;
    const auto ti = dtype_info(get<uint32_t>(b, pos));
    t.nbytes = uint64_t(count / ti->block_size) * ti->block_bytes;
    t.offset_pos = pos + 4;
    t.offset = get<uint64_t>(b, t.offset_pos);
    pos += 12;
    l.tensors.push_back(t);
  }
  l.infos_end = pos;
  l.data_offset = (pos + alignment - 1) / alignment * alignment;
  for (const auto& t : l.tensors) l.data_end = std::max(l.data_end, l.data_offset + t.offset + t.nbytes);
  return l;
}

// ---- whole-model rewrites through the Writer --------------------------------------

struct TensorCopy {
  std::string name;
  DType type;
  std::vector<int64_t> ne;
  Bytes data;
};
struct Image {
  std::vector<std::pair<std::string, Value>> kv;
  std::vector<TensorCopy> tensors;

  void erase_key(const std::string& k) {
    std::erase_if(kv, [&](const auto& p) { return p.first == k; });
  }
  void set_key(const std::string& k, Value v) {
    for (auto& p : kv)
      if (p.first == k) {
        p.second = std::move(v);
        return;
      }
    kv.emplace_back(k, std::move(v));
  }
  TensorCopy& tensor(const std::string& n) {
    for (auto& t : tensors)
      if (t.name == n) return t;
    throw std::runtime_error("test image: no tensor " + n);
  }
  // Changes a tensor's type and shape, with zero bytes of the right size.
  void reshape(const std::string& n, DType type, std::vector<int64_t> ne) {
    auto& t = tensor(n);
    int64_t count = 1;
    for (auto d : ne) count *= d;
    t.type = type;
    t.ne = std::move(ne);
    t.data.assign(row_bytes(type, count), 0);
  }
};

Image image_of(const gguf::File& f) {
  Image m;
  m.kv = f.metadata();
  for (const auto& t : f.tensors()) {
    const uint8_t* p = f.tensor_data(t);
    m.tensors.push_back({t.name, t.type, t.ne, Bytes(p, p + t.nbytes)});
  }
  return m;
}

std::string dir() { return test::temp_dir(); }

std::string write_image(const Image& m, const std::string& name) {
  gguf::Writer w;
  for (const auto& [k, v] : m.kv) w.set(k, v);
  for (const auto& t : m.tensors) w.add_tensor(t.name, t.type, t.ne, t.data);
  const std::string path = dir() + "/" + name + ".gguf";
  w.write(path);
  return path;
}

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string write_bytes(const Bytes& b, const std::string& name) {
  const std::string path = dir() + "/" + name + ".gguf";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  return path;
}

// ---- the base model ----------------------------------------------------------------

struct Base {
  std::string path;
  Bytes bytes;
  Layout layout;
  Image image;
};

// A small llama model (D 64, L 2, H 4, G 2, F 128, V 256, F16) plus extra metadata
// that gives every field family something to corrupt: arrays, a bool, an explicit
// alignment and two keys of equal length.
const Base& base() {
  static const Base b = [] {
    const std::string synth = dir() + "/synth.gguf";
    write_synthetic_model({.n_embd = 64, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .n_ff = 128,
                           .type = DType::F16, .n_vocab = 256},
                          synth);
    Base out;
    out.image = image_of(gguf::File::open(synth));
    auto u32 = [](uint32_t x) { return Value::u32(x); };
    out.image.set_key("general.alignment", u32(32));
    out.image.set_key("test.flag", Value::boolean(true));
    out.image.set_key("test.dup.a", u32(1));
    out.image.set_key("test.dup.b", u32(2));
    out.image.set_key("test.array.u32", Value::array(ValueType::U32, {u32(1), u32(2), u32(3)}));
    out.image.set_key("test.array.str", Value::array(ValueType::STRING,
                                                     {Value::str("x"), Value::str("yz")}));
    out.image.set_key("test.array.nested",
                      Value::array(ValueType::ARRAY,
                                   {Value::array(ValueType::U32, {u32(1), u32(2)}),
                                    Value::array(ValueType::U32, {u32(3)})}));
    out.path = write_image(out.image, "base");
    out.bytes = read_bytes(out.path);
    out.layout = parse_layout(out.bytes);
    return out;
  }();
  return b;
}

// ---- running a load safely ----------------------------------------------------------

struct Outcome {
  std::string what;  // "BadInput: <message>", "OK", "Error(kind): ...", "signal N", ...
  bool bad_input = false;
  std::string message;
};

size_t current_vm_bytes() {
  std::ifstream in("/proc/self/statm");
  size_t pages = 0;
  in >> pages;
  return pages * size_t(sysconf(_SC_PAGESIZE));
}

#ifdef TANDEM_TEST_ASAN
int g_report_fd = -1;  // the child's end of the pipe, for the ASan report callback

// Sends "S" and the report's "ERROR: AddressSanitizer: ..." line to the parent.
void send_asan_report(const char* report) {
  const char* e = std::strstr(report, "ERROR: ");
  if (e == nullptr) e = report;
  size_t n = std::strcspn(e, "\n");
  while (n > 0 && e[n - 1] == ' ') --n;
  if (g_report_fd < 0 || write(g_report_fd, "S", 1) != 1) return;
  if (write(g_report_fd, e, n) != ssize_t(n)) return;
}
#endif

// Runs `action` in a child with at most 64 MiB more address space and 20 s of time.
// A sanitizer report in the child (ASan builds) comes back as "sanitizer: ERROR: ...".
Outcome in_child(const std::function<void()>& action) {
  int fds[2];
  if (pipe(fds) != 0) return {"pipe failed", false, {}};
  const size_t cap = current_vm_bytes() + (size_t{64} << 20);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
#ifdef TANDEM_TEST_ASAN
    g_report_fd = fds[1];
    __asan_set_error_report_callback(send_asan_report);
#endif
    const rlimit lim{cap, cap};
    setrlimit(RLIMIT_AS, &lim);
    alarm(20);
    std::string msg;
    try {
      action();
      msg = "OK";
    } catch (const Error& e) {
      msg = (e.kind() == ErrorKind::BadInput ? "B" : "Error(" + std::to_string(e.exit_code()) + "): ") +
            e.what();
    } catch (const std::bad_alloc&) {
      msg = "std::bad_alloc (allocation over the cap)";
    } catch (const std::exception& e) {
      msg = std::string("std::exception: ") + e.what();
    }
    const ssize_t n = write(fds[1], msg.data(), msg.size());
    _exit(n == ssize_t(msg.size()) ? 0 : 1);
  }
  close(fds[1]);
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) got.append(buf, size_t(n));
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (!got.empty() && got[0] == 'S') return {"sanitizer: " + got.substr(1), false, {}};
  if (WIFSIGNALED(st))
    return {WTERMSIG(st) == SIGALRM ? "hang (killed after 20 s)"
                                    : "crash: signal " + std::to_string(WTERMSIG(st)),
            false, {}};
  if (!got.empty() && got[0] == 'B') return {"BadInput: " + got.substr(1), true, got.substr(1)};
  return {got, false, {}};
}

Outcome load_in_child(const std::string& path) {
  return in_child([&] { Model::load(path); });
}

void expect_bad_input(const std::string& path, const std::string& what) {
  const Outcome o = load_in_child(path);
  if (std::getenv("TANDEM_TEST_VERBOSE")) std::printf("%-40s %s\n", what.c_str(), o.what.c_str());
  ASSERT_TRUE(o.bad_input) << what << ": " << o.what;
  EXPECT_NE(o.message.find(path), std::string::npos) << what << ": " << o.message;
  EXPECT_EQ(o.message.find('\n'), std::string::npos) << what << ": " << o.message;
}

// `tandem info -m FILE`: exit 2, exactly one line on stderr, naming the file.
void expect_cli_rejects(const std::string& path, const std::string& what) {
  const auto r = test::run("{ " + test::tandem_bin() + " info -m " + path + " 2>&1 >/dev/null; }");
  EXPECT_EQ(r.code, 2) << what << ": " << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << what << ": " << r.out;
  EXPECT_NE(r.out.find(path), std::string::npos) << what << ": " << r.out;
}

struct Case {
  std::string name;
  Bytes bytes;
  bool cli = false;  // also run through `tandem info`
};

void run_cases(const std::vector<Case>& cases) {
  for (const auto& c : cases) {
    const std::string path = write_bytes(c.bytes, c.name);
    expect_bad_input(path, c.name);
    if (c.cli) expect_cli_rejects(path, c.name);
    std::remove(path.c_str());
  }
}

// A patched copy of the base file.
Case patched(const std::string& name, const std::function<void(Bytes&, const Layout&)>& fn,
             bool cli = false) {
  Bytes b = base().bytes;
  fn(b, base().layout);
  return {name, std::move(b), cli};
}

template <typename T>
Case field(const std::string& name, size_t pos, T v, bool cli = false) {
  return patched(name, [&](Bytes& b, const Layout&) { put<T>(b, pos, v); }, cli);
}

void run_image_case(const std::string& name, const std::function<void(Image&)>& edit,
                    bool cli = false) {
  Image m = base().image;
  edit(m);
  const std::string path = write_image(m, name);
  expect_bad_input(path, name);
  if (cli) expect_cli_rejects(path, name);
}

}  // namespace

// The guard itself: the cap stops a large allocation, the alarm a hang, and a crash
// is reported rather than taking the test down.
// Under ASan the first and third end in an ASan report instead (see TANDEM_TEST_ASAN):
// the cap and the crash report are still checked, through the report's text.
TEST(GgufCorrupt, ChildGuardWorks) {
  const std::string big = in_child([] { std::vector<char> v(size_t{256} << 20, 1); }).what;
  const std::string segv = in_child([] { std::raise(SIGSEGV); }).what;
#ifdef TANDEM_TEST_ASAN
  EXPECT_EQ(big.rfind("sanitizer: ERROR: AddressSanitizer: ", 0), 0u) << big;
  EXPECT_NE(big.find("out of memory"), std::string::npos) << big;
  EXPECT_EQ(segv.rfind("sanitizer: ERROR: AddressSanitizer: SEGV", 0), 0u) << segv;
#else
  EXPECT_EQ(big, "std::bad_alloc (allocation over the cap)");
  EXPECT_EQ(segv, "crash: signal 11");
#endif
  EXPECT_EQ(in_child([] { std::vector<char> ok(size_t{8} << 20, 1); }).what, "OK");
  EXPECT_TRUE(in_child([] { bad_input("x"); }).bad_input);
}

TEST(GgufCorrupt, BaseModelIsValid) {
  const Outcome o = load_in_child(base().path);
  ASSERT_EQ(o.what, "OK");
  const auto m = Model::load(base().path);
  EXPECT_EQ(m->hparams().n_layer, 2);
  EXPECT_EQ(base().layout.data_end, base().bytes.size());
  EXPECT_EQ(base().layout.data_offset, gguf::File::open(base().path).data_offset());
}

TEST(GgufCorrupt, Truncated) {
  const Base& b = base();
  std::vector<size_t> cuts;
  // every byte through the header, metadata and tensor infos (and a little data)
  for (size_t n = 0; n < b.layout.data_offset + 64; ++n) cuts.push_back(n);
  // every 1/64 of the file
  for (size_t k = 1; k < 64; ++k) cuts.push_back(b.bytes.size() * k / 64);
  cuts.push_back(b.bytes.size() - 1);
  std::vector<Case> cases;
  for (const size_t n : cuts) {
    if (n >= b.layout.data_end) continue;
    cases.push_back({"truncated-" + std::to_string(n), Bytes(b.bytes.begin(), b.bytes.begin() + long(n)),
                     n == 0 || n == 10 || n == 100 || n == b.bytes.size() / 2});
  }
  run_cases(cases);
}

TEST(GgufCorrupt, MissingOrNotAFile) {
  expect_bad_input(dir() + "/does-not-exist.gguf", "missing file");
  // The CLI checks that the file exists while parsing flags: exit 2, the path, --help.
  const auto r = test::run(test::tandem_bin() + " info -m " + dir() + "/does-not-exist.gguf");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("does-not-exist.gguf"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--help"), std::string::npos) << r.out;
  expect_bad_input(dir(), "a directory");
}

TEST(GgufCorrupt, HeaderFields) {
  run_cases({
      field<uint32_t>("magic-GGUG", 0, 0x47554747, true),
      field<uint32_t>("magic-zero", 0, 0),
      field<uint32_t>("magic-big-endian", 0, 0x47475546),
      field<uint32_t>("version-1", 4, 1, true),
      field<uint32_t>("version-4", 4, 4),
      field<uint32_t>("version-0", 4, 0),
      field<uint32_t>("version-max", 4, 0xFFFFFFFFu),
      field<uint64_t>("n_tensors-2p63", 8, k2p63, true),
      field<uint64_t>("n_tensors-max", 8, kMax64),
      field<uint64_t>("n_tensors-limit", 8, gguf::kMaxTensorCount + 1),
      field<uint64_t>("n_tensors-plus-one", 8, base().layout.tensors.size() + 1),
      field<uint64_t>("n_tensors-minus-one", 8, base().layout.tensors.size() - 1),
      field<uint64_t>("n_kv-2p63", 16, k2p63, true),
      field<uint64_t>("n_kv-max", 16, kMax64),
      field<uint64_t>("n_kv-limit", 16, gguf::kMaxMetadataCount + 1),
      field<uint64_t>("n_kv-plus-one", 16, base().layout.kv.size() + 1),
  });
}

TEST(GgufCorrupt, StringLengths) {
  const Layout& l = base().layout;
  const size_t key0 = l.kv[0].key_len_pos;
  const size_t arch = l.key("general.architecture").value_pos;
  const size_t tname = l.tensors[0].name_len_pos;
  const size_t elem = l.key("test.array.str").value_pos + 12;  // first element's length
  std::vector<Case> cases;
  for (const uint64_t n : {k2p63, kMax64, gguf::kMaxStringLength + 1, uint64_t(base().bytes.size())}) {
    const std::string s = std::to_string(n);
    cases.push_back(field<uint64_t>("key-length-" + s, key0, n, n == k2p63));
    cases.push_back(field<uint64_t>("string-value-length-" + s, arch, n));
    cases.push_back(field<uint64_t>("tensor-name-length-" + s, tname, n));
    cases.push_back(field<uint64_t>("array-string-length-" + s, elem, n));
  }
  run_cases(cases);
}

TEST(GgufCorrupt, ArrayCountsAndTypes) {
  const Layout& l = base().layout;
  const size_t flat = l.key("test.array.u32").value_pos;
  const size_t strs = l.key("test.array.str").value_pos;
  const size_t nested = l.key("test.array.nested").value_pos;
  const size_t inner = nested + 12;  // first inner array: elem type, then count
  std::vector<Case> cases;
  for (const uint64_t n : {k2p63, kMax64, uint64_t(base().bytes.size() / 4 + 1)}) {
    const std::string s = std::to_string(n);
    cases.push_back(field<uint64_t>("array-count-" + s, flat + 4, n, n == k2p63));
    cases.push_back(field<uint64_t>("string-array-count-" + s, strs + 4, n));
    cases.push_back(field<uint64_t>("nested-outer-count-" + s, nested + 4, n));
    cases.push_back(field<uint64_t>("nested-inner-count-" + s, inner + 4, n));
  }
  cases.push_back(field<uint32_t>("array-elem-type-13", flat, 13, true));
  cases.push_back(field<uint32_t>("array-elem-type-max", flat, 0xFFFFFFFFu));
  cases.push_back(field<uint32_t>("nested-inner-elem-type-99", inner, 99));
  // An array of arrays nested deeper than the limit: turn the inner arrays' element
  // type into ARRAY so their payload parses as more arrays.
  cases.push_back(field<uint32_t>("inner-elem-becomes-array", inner, uint32_t(ValueType::ARRAY)));
  run_cases(cases);
}

TEST(GgufCorrupt, ValueTypesAndBools) {
  const Layout& l = base().layout;
  run_cases({
      field<uint32_t>("value-type-13", l.kv[0].type_pos, 13, true),
      field<uint32_t>("value-type-max", l.key("llama.block_count").type_pos, 0xFFFFFFFFu),
      field<uint8_t>("bool-2", l.key("test.flag").value_pos, 2, true),
      field<uint8_t>("bool-255", l.key("test.flag").value_pos, 255),
      // block_count read as a string: its u32 value becomes a string length
      field<uint32_t>("block-count-as-string", l.key("llama.block_count").type_pos,
                      uint32_t(ValueType::STRING)),
  });
}

TEST(GgufCorrupt, Dimensions) {
  const Layout& l = base().layout;
  const auto& t = l.tensor("blk.0.attn_q.weight");
  std::vector<Case> cases = {
      field<uint32_t>("n-dims-0", t.ndims_pos, 0),
      field<uint32_t>("n-dims-5", t.ndims_pos, 5, true),
      field<uint32_t>("n-dims-max", t.ndims_pos, 0xFFFFFFFFu),
      field<uint64_t>("dim-0", t.dim_pos[0], 0, true),
      field<uint64_t>("dim1-0", t.dim_pos[1], 0),
      field<uint64_t>("dim-2p63", t.dim_pos[0], k2p63),
      field<uint64_t>("dim-max", t.dim_pos[1], kMax64),
      field<uint64_t>("dim-over-limit", t.dim_pos[0], uint64_t(gguf::kMaxDimSize) + 1),
      patched("dims-product-overflow",
              [&](Bytes& b, const Layout&) {
                put<uint64_t>(b, t.dim_pos[0], uint64_t{1} << 32);
                put<uint64_t>(b, t.dim_pos[1], uint64_t{1} << 32);
              }, true),
      patched("dims-product-at-limit",
              [&](Bytes& b, const Layout&) {
                put<uint64_t>(b, t.dim_pos[0], uint64_t{1} << 20);
                put<uint64_t>(b, t.dim_pos[1], uint64_t{1} << 21);
              }),
      field<uint64_t>("dim-larger-than-data", t.dim_pos[1], 1u << 20),
  };
  run_cases(cases);
}

TEST(GgufCorrupt, TensorTypesAndOffsets) {
  const Layout& l = base().layout;
  const auto& q = l.tensor("blk.0.attn_q.weight");
  const auto& last = l.tensors.back();
  run_cases({
      field<uint32_t>("tensor-type-4", q.type_pos, 4, true),  // a GGUF id no type has
      field<uint32_t>("tensor-type-1000", q.type_pos, 1000),
      field<uint32_t>("tensor-type-max", q.type_pos, 0xFFFFFFFFu),
      field<uint32_t>("tensor-type-i32", q.type_pos, uint32_t(DType::I32)),
      field<uint32_t>("norm-type-q4_0",
                      l.tensor("blk.0.attn_norm.weight").type_pos, uint32_t(DType::Q4_0)),
      field<uint64_t>("offset-past-end", last.offset_pos, base().bytes.size(), true),
      field<uint64_t>("offset-2p63", q.offset_pos, k2p63),
      field<uint64_t>("offset-wraps", q.offset_pos, kMax64 - 31),
      field<uint64_t>("offset-misaligned", q.offset_pos, q.offset + 2, true),
      field<uint64_t>("offset-end-overlaps-eof", last.offset_pos, last.offset + 32),
  });
}

TEST(GgufCorrupt, Alignment) {
  const auto& a = base().layout.key("general.alignment");
  run_cases({
      field<uint32_t>("alignment-0", a.value_pos, 0, true),
      field<uint32_t>("alignment-3", a.value_pos, 3),
      field<uint32_t>("alignment-48", a.value_pos, 48),
      field<uint32_t>("alignment-2p31", a.value_pos, 1u << 31),
      field<uint32_t>("alignment-as-i32", a.type_pos, uint32_t(ValueType::I32)),
      field<uint32_t>("alignment-as-f32", a.type_pos, uint32_t(ValueType::F32)),
  });
  run_image_case("alignment-as-u64", [](Image& m) { m.set_key("general.alignment", Value::u64(32)); },
                 true);
  run_image_case("alignment-as-string",
                 [](Image& m) { m.set_key("general.alignment", Value::str("32")); });
}

TEST(GgufCorrupt, Duplicates) {
  const Layout& l = base().layout;
  const auto& dup = l.key("test.dup.b");
  const auto& k = l.tensor("blk.0.attn_k.weight");
  ASSERT_EQ(l.tensor("blk.0.attn_q.weight").name.size(), k.name.size());
  run_cases({
      patched("duplicate-key",
              [&](Bytes& b, const Layout&) { b[dup.key_len_pos + 8 + dup.key.size() - 1] = 'a'; },
              true),
      patched("duplicate-tensor",
              [&](Bytes& b, const Layout&) { b[k.name_pos + std::strlen("blk.0.attn_")] = 'q'; },
              true),
  });
}

TEST(GgufCorrupt, MissingTensors) {
  const Layout& l = base().layout;
  std::vector<Case> cases;
  for (const char* name : {"token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight",
                           "blk.1.ffn_down.weight", "blk.1.attn_norm.weight"}) {
    const auto& t = l.tensor(name);
    cases.push_back(patched(std::string("missing-") + name, [&](Bytes& b, const Layout&) {
      b[t.name_pos + t.name.size() - 1] = 'X';  // rename "...weight" to "...weighX"
    }, cases.empty()));
  }
  run_cases(cases);
  run_image_case("no-tensors", [](Image& m) { m.tensors.clear(); });
}

TEST(GgufCorrupt, MissingOrBadKeys) {
  for (const char* key : {"general.architecture", "llama.block_count", "llama.embedding_length",
                          "llama.attention.head_count", "llama.feed_forward_length"}) {
    run_image_case(std::string("missing-key-") + key, [&](Image& m) { m.erase_key(key); },
                   std::string(key) == "llama.block_count");
  }
  struct KeyCase {
    const char* name;
    const char* key;
    Value v;
    bool cli;
  };
  const std::vector<KeyCase> keys = {
      {"arch-gpt2", "general.architecture", Value::str("gpt2"), false},
      {"arch-not-string", "general.architecture", Value::u32(1), false},
      {"block-count-string", "llama.block_count", Value::str("2"), false},
      {"block-count-0", "llama.block_count", Value::u32(0), false},
      {"block-count-3", "llama.block_count", Value::u32(3), false},  // blk.2.* missing
      {"block-count-huge", "llama.block_count", Value::u32(0x7fffffff), false},
      {"block-count-negative", "llama.block_count", Value::i32(-1), false},
      {"head-count-0", "llama.attention.head_count", Value::u32(0), false},
      {"kv-heads-0", "llama.attention.head_count_kv", Value::u32(0), false},
      {"kv-heads-3", "llama.attention.head_count_kv", Value::u32(3), true},  // G !| H
      {"kv-heads-over-heads", "llama.attention.head_count_kv", Value::u32(8), false},
      {"embedding-length-32", "llama.embedding_length", Value::u32(32), true},
      {"ff-length-256", "llama.feed_forward_length", Value::u32(256), false},
      {"vocab-size-257", "llama.vocab_size", Value::u32(257), false},
      {"vocab-size-0", "llama.vocab_size", Value::u32(0), false},
      {"rope-dims-odd", "llama.rope.dimension_count", Value::u32(15), false},
      {"rope-dims-over-head", "llama.rope.dimension_count", Value::u32(32), false},
      {"eps-0", "llama.attention.layer_norm_rms_epsilon", Value::f32(0.0f), false},
      {"eps-string", "llama.attention.layer_norm_rms_epsilon", Value::str("x"), false},
      {"ctx-0", "llama.context_length", Value::u32(0), false},
  };
  for (const auto& k : keys)
    run_image_case(k.name, [&](Image& m) { m.set_key(k.key, k.v); }, k.cli);
}

TEST(GgufCorrupt, WrongShapesAndTypes) {
  struct ShapeCase {
    const char* name;
    const char* tensor;
    DType type;
    std::vector<int64_t> ne;
    bool cli;
  };
  const std::vector<ShapeCase> cases = {
      {"attn-q-transposed-dims", "blk.0.attn_q.weight", DType::F16, {64, 32}, true},
      {"attn-q-rows", "blk.0.attn_q.weight", DType::F16, {64, 65}, false},
      {"attn-k-full-width", "blk.1.attn_k.weight", DType::F16, {64, 64}, false},
      {"ffn-down-swapped", "blk.0.ffn_down.weight", DType::F16, {64, 128}, false},
      {"matrix-3d", "blk.0.attn_v.weight", DType::F16, {64, 32, 1}, false},
      {"matrix-1d", "blk.0.attn_output.weight", DType::F16, {4096}, false},
      {"matrix-i32", "blk.0.ffn_up.weight", DType::I32, {64, 128}, false},
      {"embd-vocab", "token_embd.weight", DType::F16, {64, 255}, false},
      {"output-vocab", "output.weight", DType::F16, {64, 300}, false},
      {"norm-f16", "blk.0.attn_norm.weight", DType::F16, {64}, true},
      {"norm-q8_0", "output_norm.weight", DType::Q8_0, {64}, false},
      {"norm-length", "blk.1.ffn_norm.weight", DType::F32, {63}, false},
  };
  for (const auto& c : cases)
    run_image_case(c.name, [&](Image& m) { m.reshape(c.tensor, c.type, c.ne); }, c.cli);
  run_image_case("bias-wrong-length", [](Image& m) {
    m.tensors.push_back({"blk.0.attn_q.bias", DType::F32, {10}, Bytes(40, 0)});
  });
  run_image_case("bias-f16", [](Image& m) {
    m.tensors.push_back({"blk.0.attn_k.bias", DType::F16, {32}, Bytes(64, 0)});
  });
}

// A model file replaced while `tandem generate` runs (2000 tokens: about 3 s on an
// idle machine; the file changes once the run has printed its first token, so the model
// is loaded and decoding, however slow the machine, and the test has seen it still going).
// Renamed over (the usual way to replace a file): the process keeps its mapping of the old
// file, so its output is the same as an undisturbed run's. Overwritten in place (cp truncates the file first): the
// lost pages raise SIGBUS, reported as one line, exit 2.
TEST(GgufCorrupt, ModelReplacedWhileInUse) {
  const std::string dir = test::temp_dir();
  const std::string model = dir + "/replaced.gguf";
  const std::string other = test::shared_path("models/tiny-q4_0-pure.gguf");
  const std::string gen = test::tandem_bin() + " generate -m " + model +
                          " --ids 1,2,3 -n 2000 --temp 0 -t 1 --show-ids";
  const std::string fresh = "cp " + test::shared_path("models/tiny-f16.gguf") + " " + model;
  ASSERT_EQ(test::run(fresh).code, 0);
  const auto ref = test::run("{ " + gen + " 2>/dev/null; }");
  ASSERT_EQ(ref.code, 0) << ref.out;
  // Waits (up to 60 s) until the file named holds the run's first token.
  const auto first_token = [](const std::string& out) {
    return "for i in $(seq 600); do [ -s " + out + " ] && break; sleep 0.1; done; ";
  };
  // Renamed over once decoding runs: noticed at the next decode step, exit 2 naming the
  // file; the tokens printed before are those of the undisturbed run.
  ASSERT_EQ(test::run(fresh).code, 0);
  const auto renamed = test::run("bash -c '" + gen + " > " + dir + "/renamed.out 2> " + dir +
                                 "/renamed.err & pid=$!; " + first_token(dir + "/renamed.out") +
                                 "kill -0 $pid && echo running; cp " +
                                 other + " " + model + ".new && mv " + model + ".new " + model +
                                 "; wait $pid; echo rc=$?; cat " + dir + "/renamed.err'");
  EXPECT_NE(renamed.out.find("running\nrc=2\n"), std::string::npos) << renamed.out;
  EXPECT_NE(renamed.out.find("replaced while in use"), std::string::npos) << renamed.out;
  EXPECT_NE(renamed.out.find(model), std::string::npos) << renamed.out;
  std::string partial = test::run("cat " + dir + "/renamed.out").out;
  while (!partial.empty() && partial.back() != ' ') partial.pop_back();  // whole ids only
  EXPECT_EQ(ref.out.compare(0, partial.size(), partial), 0) << partial;
  // Overwritten in place once decoding runs.
  ASSERT_EQ(test::run(fresh).code, 0);
  const auto over = test::run("bash -c '" + gen + " > " + dir + "/over.out 2> " + dir +
                              "/over.err & pid=$!; " + first_token(dir + "/over.out") +
                              "kill -0 $pid && echo running; cp " +
                              other + " " + model + "; wait $pid; echo rc=$?; cat " + dir +
                              "/over.err'");
  EXPECT_NE(over.out.find("running\n"), std::string::npos) << over.out;
  EXPECT_NE(over.out.find("rc=2\n"), std::string::npos) << over.out;
  // cp truncates, then writes: the per-step check may see the new size first, or a read of
  // a page past the new end may fault first. Either way: one clear error, exit 2.
  EXPECT_TRUE(over.out.find("truncated while in use (SIGBUS)") != std::string::npos ||
              over.out.find("changed size while in use") != std::string::npos)
      << over.out;
  EXPECT_EQ(std::count(over.out.begin(), over.out.end(), '\n'), 3) << over.out;
}
