#pragma once
// Entry functions of the fuzz targets, shared with the regression test
// (tests/model/fuzz_regression_test.cpp, tests/tools/fuzz_cli_regression_test.cpp),
// which replays every input kept under tests/fuzz_regressions/<target>/.
//
// Each entry returns normally when the input is handled as it should be: accepted, or
// refused with tandem::Error of kind BadInput (or Resource). Anything else escapes: an
// Error of kind Internal (a failed invariant check: validation let bad input through),
// any other exception, or a broken property (check_property aborts). Under libFuzzer an
// escaping exception terminates the process and is reported as a crash.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace tandem {
class Tokenizer;
}

namespace tandem::fuzz {

// A property the code under test must keep; thrown by check_property.
struct PropertyViolation : std::logic_error {
  using std::logic_error::logic_error;
};

// --- model-level targets (fuzz/entries_model.cpp; link tandem_model) ---

// gguf::File::from_memory on the bytes, then every metadata value and tensor info
// rendered and checked (tensor data inside the image; every byte of it readable).
void gguf_reader(const uint8_t* data, size_t size);
// Model::load of the bytes (written to a memfd, loaded through /proc/self/fd/N), then
// every bound weight checked to lie inside the file, and the tokenizer (if any) run.
void model_loader(const uint8_t* data, size_t size);
// Tokenizers of the shipped vocabularies (the folder named by $TANDEM_SHARED, else the
// TANDEM_SHARED_DIR compile definition, else ../shared); loaded once.
//   spm: ggml-vocab-llama-spm.gguf; bpe: ggml-vocab-llama-bpe.gguf and ggml-vocab-gpt-2.gguf
// Byte 0 of the input picks what to do with the rest (see entries_model.cpp).
void tokenizer_spm(const uint8_t* data, size_t size);
void tokenizer_bpe(const uint8_t* data, size_t size);
// The shared folder as above.
std::string shared_dir();

// --- CLI parsers (fuzz/entries_cli.cpp; link tandem_parallel and tools/common.cpp) ---

// parse_id_list (--ids), parallel::parse_scheme (--sp, rank count from byte 1),
// parse_size (--max-memory), read_file_bounded (--prompt-file; a regular file or a pipe),
// parse_int_in with the int_in flag check, and parse_int_list (bounded whole-number flags
// and lists); byte 0 picks the parser, the rest is the text (see entries_cli.cpp).
void cli_numbers(const uint8_t* data, size_t size);

}  // namespace tandem::fuzz
