// libFuzzer target: Model loader: Model::load on arbitrary bytes (via a memfd), weights checked to lie
// inside the file, tokenizer exercised (fuzz/entries_model.cpp).
#include <cstddef>
#include <cstdint>

#include "entries.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::model_loader(data, size);
  return 0;
}
