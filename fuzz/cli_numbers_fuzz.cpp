// libFuzzer target: CLI parsers of numbers and sizes: --ids, --sp, --max-memory (fuzz/entries_cli.cpp).
#include <cstddef>
#include <cstdint>

#include "entries.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::cli_numbers(data, size);
  return 0;
}
