// libFuzzer target: GGUF reader: gguf::File::from_memory on arbitrary bytes, then every metadata value
// and tensor info walked (fuzz/entries_model.cpp).
#include <cstddef>
#include <cstdint>

#include "entries.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::gguf_reader(data, size);
  return 0;
}
