// Entry function of the CLI-parser fuzz target (see entries.hpp). Needs tools/common.cpp
// (parse_id_list) and tandem_parallel (parse_scheme) at link time.
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>

#include "entries.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/size.hpp"
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

}  // namespace

// Byte 0 % 4 picks the parser: 0 --ids, 1 --sp (byte 1 + 1 = rank count), 2 sizes
// (--max-memory), 3 format_size of 8 bytes taken as a double.
void cli_numbers(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const uint8_t mode = data[0] % 4;
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
  }
}

}  // namespace tandem::fuzz
