#pragma once
// Byte sizes as users write them: "4G", "512MiB", "1.5GB", "1048576" (no suffix = bytes).
// K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024; KB/MB/GB/TB powers of 1000.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tandem {

// nullopt for anything malformed, negative, or above 2^62 bytes.
std::optional<uint64_t> parse_size(std::string_view text);
// "1.5 GiB", "512.0 MiB", "100 B".
std::string format_size(double bytes);

}  // namespace tandem
