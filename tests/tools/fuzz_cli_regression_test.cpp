// Replays the inputs kept under tests/fuzz_regressions/cli_numbers/ through the entry
// function of the cli_numbers fuzz target (fuzz/entries_cli.cpp): the CLI's parsers of
// token-id lists (--ids), schemes (--sp) and sizes (--max-memory).
#include <gtest/gtest.h>

#include "../../fuzz/entries.hpp"
#include "../../fuzz/replay.hpp"

// The entry function and the CLI helpers it tests are compiled into this test (the
// fuzz library is built only in the clang fuzz configuration; the tandem program's
// objects are not a library).
#include "../../fuzz/entries_cli.cpp"
#include "../../tools/common.cpp"

namespace {

TEST(FuzzRegression, CliNumbers) { tandem::fuzz::replay("cli_numbers", tandem::fuzz::cli_numbers); }

TEST(FuzzRegression, CliEntryAcceptsValidInputs) {
  // Byte 0 picks the parser (0 --ids, 1 --sp with byte 1 + 1 ranks, 2 sizes).
  const std::string texts[] = {std::string(1, '\0') + "1,2 3", std::string{'\1', '\3'} + "hybrid:2x2",
                               std::string(1, '\2') + "4G", std::string(1, '\0') + "-1",
                               std::string{'\1', '\3'} + "nope", std::string(1, '\2') + "4X"};
  for (const std::string& text : texts)
    EXPECT_NO_THROW(tandem::fuzz::cli_numbers(reinterpret_cast<const uint8_t*>(text.data()),
                                              text.size()))
        << text;
}

}  // namespace
