// Entry function of the CLI-parser fuzz target (see entries.hpp). Needs tools/common.cpp
// (parse_id_list, parse_int_in, parse_int_list, int_in), tandem_parallel (parse_scheme)
// and tandem_core (read_file_bounded) at link time.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "entries.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/size.hpp"
#include "tandem/core/text_file.hpp"
#include "tandem/parallel/scheme.hpp"
#include "../tools/common.hpp"

namespace tandem::fuzz {
namespace {

#define FUZZ_CHECK(cond)                                                                      \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw PropertyViolation(std::string("fuzz property failed: ") + #cond + " (" __FILE__ \
                              ":" + std::to_string(__LINE__) + ")");                          \
  } while (0)

// Runs f; Error(BadInput) naming the flag is the expected refusal.
template <typename F>
bool accepted(F&& f, std::string_view flag) {
  try {
    f();
    return true;
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::BadInput) throw;
    FUZZ_CHECK(std::string_view(e.what()).starts_with(flag));
    return false;
  }
}

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// read_file_bounded on `bytes` with the given limit, through a memfd (a regular file)
// or a pipe (no size to trust), opened by its /proc/self/fd path as a user's path is.
void bounded_read(std::string_view bytes, uint64_t limit, bool pipe) {
  Fd rd, wr;
  if (pipe) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::strerror(errno));
    rd.fd = fds[0], wr.fd = fds[1];
  } else {
    rd.fd = ::memfd_create("tandem-fuzz-text", MFD_CLOEXEC);
    if (rd.fd < 0) throw std::runtime_error(std::strerror(errno));
    wr.fd = ::dup(rd.fd);
  }
  // At most a few hundred bytes: the whole input fits in a pipe's buffer.
  if (::write(wr.fd, bytes.data(), bytes.size()) != ssize_t(bytes.size()))
    throw std::runtime_error("short write to the fuzz text file");
  ::close(wr.fd), wr.fd = -1;  // end of file for the reader of a pipe
  const std::string path = "/proc/self/fd/" + std::to_string(rd.fd);
  std::string text;
  if (accepted([&] { text = read_file_bounded(path, "--prompt-file", limit); }, "--prompt-file")) {
    FUZZ_CHECK(bytes.size() <= limit);
    FUZZ_CHECK(text == bytes);
  } else {
    FUZZ_CHECK(bytes.size() > limit);
  }
}

// Bounds of the CLI's whole-number flags (int_in, parse_int_list), and one arbitrary pair.
struct Bounds {
  int64_t lo, hi;
};
constexpr Bounds kFlagBounds[] = {
    {1, 4096},                // plan --gpus, --gpus-per-node; generate --parallel
    {1, int64_t{1} << 40},    // plan --tokens
    {0, int64_t{1} << 40},    // plan --decode-tokens
    {1, 1024},                // -t
    {0, int64_t{1} << 20},    // --kv-page, compare --decode-tokens
    {1, 256},                 // --ranks
    {0, int64_t{1} << 26},    // generate -n, logits --last
    {1, int64_t{1} << 26},    // --random-tokens
    {0, int64_t{1} << 24},    // bench -p/-n/-d, generate --top-k
    {0, int64_t{1} << 62},    // generate --seed
    {1, 65536},               // bench --roofline-mib
    {2, 64},                  // compare --ranks
    {1, int64_t{1} << 22},    // compare --lengths
    {INT64_MIN, INT64_MAX}};  // any (replaced by 16 more bytes when there are)

// The bounds named by the first byte of `rest` (consumed); the last entry of the table is
// replaced by 16 more bytes when there are that many (lo and hi, swapped into order).
Bounds take_bounds(std::string_view& rest) {
  if (rest.empty()) return kFlagBounds[0];
  const size_t n = sizeof kFlagBounds / sizeof kFlagBounds[0];
  const size_t k = static_cast<uint8_t>(rest[0]) % n;
  rest.remove_prefix(1);
  Bounds b = kFlagBounds[k];
  if (k == n - 1 && rest.size() >= 16) {
    std::memcpy(&b.lo, rest.data(), 8);
    std::memcpy(&b.hi, rest.data() + 8, 8);
    rest.remove_prefix(16);
    if (b.lo > b.hi) std::swap(b.lo, b.hi);
  }
  return b;
}

// parse_int_in, and the same text as a flag's value through CLI11 with the int_in check:
// both accept it or both refuse it, with the same value.
void bounded_int(std::string_view text, Bounds b) {
  int64_t v = 0;
  const bool ok = accepted([&] { v = cli::parse_int_in(text, "--n", b.lo, b.hi); }, "--n");
  if (ok) {
    FUZZ_CHECK(v >= b.lo && v <= b.hi);
    FUZZ_CHECK(std::to_string(v) == text);
  }
  CLI::App app;
  int64_t x = 0;
  app.add_option("--n", x)->check(cli::int_in(b.lo, b.hi));
  std::vector<std::string> args{"--n=" + std::string(text)};
  try {
    app.parse(args);
    FUZZ_CHECK(ok);
    FUZZ_CHECK(x == v);
  } catch (const CLI::ParseError& e) {
    FUZZ_CHECK(!ok);
    FUZZ_CHECK(std::string_view(e.what()).find("--n") != std::string_view::npos);
  }
}

// parse_int_list with at most `max_items` items.
void bounded_list(std::string_view text, Bounds b, size_t max_items) {
  std::vector<int64_t> v;
  if (accepted([&] { v = cli::parse_int_list(text, "--lengths", b.lo, b.hi, max_items); },
               "--lengths")) {
    FUZZ_CHECK(!v.empty() && v.size() <= max_items);
    std::string again;
    for (const int64_t x : v) {
      FUZZ_CHECK(x >= b.lo && x <= b.hi);
      again += (again.empty() ? "" : ",") + std::to_string(x);
    }
    FUZZ_CHECK(again == text);
  }
}

}  // namespace

// Byte 0 % 8 picks the parser: 0 --ids, 1 --sp (byte 1 + 1 = rank count), 2 sizes
// (--max-memory), 3 format_size of 8 bytes taken as a double, 4 read_file_bounded of the
// bytes after byte 1 (byte 1 = the limit) through a regular file, 5 the same through a
// pipe, 6 a whole number in bounds (parse_int_in and the int_in flag check; byte 1 picks
// the bounds), 7 a comma list of them (parse_int_list; byte 1 the bounds, byte 2 % 8 + 1
// the most items).
void cli_numbers(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const uint8_t mode = data[0] % 8;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (mode) {
    case 0: {
      std::vector<int32_t> ids;
      if (accepted([&] { ids = cli::parse_id_list(std::string(rest), "--ids"); }, "--ids")) {
        FUZZ_CHECK(!ids.empty());
        std::string again;
        for (int32_t id : ids) {
          FUZZ_CHECK(id >= 0);
          again += std::to_string(id) + ",";
        }
        FUZZ_CHECK(cli::parse_id_list(again, "--ids") == ids);
      }
      break;
    }
    case 1: {
      if (rest.empty()) return;
      const int ranks = 1 + static_cast<uint8_t>(rest[0]);
      rest.remove_prefix(1);
      parallel::Scheme s;
      if (accepted([&] { s = parallel::parse_scheme(rest, ranks, "--sp"); }, "--sp")) {
        FUZZ_CHECK(s.name == rest);
        if (s.is("hybrid"))
          FUZZ_CHECK(s.ulysses > 0 && s.ring > 0 && int64_t{s.ulysses} * s.ring == ranks);
      }
      break;
    }
    case 2: {
      if (const auto bytes = parse_size(rest)) {
        FUZZ_CHECK(*bytes <= (uint64_t{1} << 62));
        (void)format_size(double(*bytes));
      }
      break;
    }
    case 3: {
      double x = 0;
      if (rest.size() >= sizeof x) std::memcpy(&x, rest.data(), sizeof x);
      (void)format_size(x);
      break;
    }
    case 4:
    case 5: {
      if (rest.empty()) return;
      const uint64_t limit = static_cast<uint8_t>(rest[0]);
      rest.remove_prefix(1);
      bounded_read(rest, limit, mode == 5);
      break;
    }
    case 6: {
      const Bounds b = take_bounds(rest);
      bounded_int(rest, b);
      break;
    }
    case 7: {
      const Bounds b = take_bounds(rest);
      if (rest.empty()) return;
      const size_t max_items = static_cast<uint8_t>(rest[0]) % 8 + 1;
      rest.remove_prefix(1);
      bounded_list(rest, b, max_items);
      break;
    }
  }
}

}  // namespace tandem::fuzz
