// libFuzzer target: Byte-level BPE tokenizers (ggml-vocab-llama-bpe.gguf, ggml-vocab-gpt-2.gguf):
// encode/decode of arbitrary bytes and decode of arbitrary id lists (fuzz/entries_model.cpp).
#include <cstddef>
#include <cstdint>

#include "entries.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::tokenizer_bpe(data, size);
  return 0;
}
