#pragma once
// Whole files a user names (a prompt, a text to tokenize, a JSON profile), read with a
// bound: a regular file's size is checked before any byte is read, anything else (a pipe,
// /dev/zero, a terminal) is read only up to the bound.
#include <cstdint>
#include <string>
#include <string_view>

namespace tandem {

// The longest text the tokenizer takes, and so the longest prompt file (README, "Limits
// checked on input").
inline constexpr uint64_t kMaxTextBytes = uint64_t{1} << 29;  // 512 MiB
// The longest JSON file the program reads (hardware profiles, the roofline cache): they
// hold a few hundred bytes.
inline constexpr uint64_t kMaxJsonFileBytes = uint64_t{1} << 24;  // 16 MiB

// The whole content of `path`, at most `limit` bytes. A regular file larger than `limit`
// is refused after fstat, without reading; a file of any other kind is read until its end
// or until `limit` + 1 bytes have arrived, and refused then (the bytes read are held in
// pieces of at most 1 MiB, so a refused read holds about `limit` bytes at its peak).
// Throws Error(BadInput) "FLAG PATH: ..." (FLAG omitted when empty) when the file cannot
// be opened or read, is a directory, or is over the limit.
std::string read_file_bounded(const std::string& path, std::string_view flag,
                              uint64_t limit = kMaxTextBytes);

}  // namespace tandem
