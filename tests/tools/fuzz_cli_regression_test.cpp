// Replays the inputs kept under tests/fuzz_regressions/cli_numbers/ through the entry
// function of the cli_numbers fuzz target (fuzz/entries_cli.cpp): the CLI's parsers of
// token-id lists (--ids), schemes (--sp), sizes (--max-memory), the bounded file reader
// (--prompt-file) and bounded whole numbers and lists (int_in, parse_int_list).
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
  // Byte 0 picks the parser (0 --ids, 1 --sp with byte 1 + 1 ranks, 2 sizes, 4/5 the
  // bounded reader with byte 1 as the limit, 6 a bounded number, 7 a bounded list).
  const std::string texts[] = {std::string(1, '\0') + "1,2 3", std::string{'\1', '\3'} + "hybrid:2x2",
                               std::string(1, '\2') + "4G", std::string(1, '\0') + "-1",
                               std::string{'\1', '\3'} + "nope", std::string(1, '\2') + "4X",
                               std::string{'\4', '\5'} + "hello", std::string{'\4', '\4'} + "hello",
                               std::string{'\5', '\5'} + "hello", std::string{'\5', '\0'} + "x",
                               std::string{'\4', '\0'}, std::string{'\6', '\0'} + "4096",
                               std::string{'\6', '\0'} + "4097", std::string{'\6', '\0'} + "010",
                               std::string{'\6', '\0'} + "0x10", std::string{'\6', '\0'} + "",
                               std::string{'\7', '\14', '\1'} + "256,1024",
                               std::string{'\7', '\14', '\0'} + "256,1024",
                               std::string{'\7', '\14', '\7'} + "256,,1024"};
  for (const std::string& text : texts)
    EXPECT_NO_THROW(tandem::fuzz::cli_numbers(reinterpret_cast<const uint8_t*>(text.data()),
                                              text.size()))
        << text;
}

}  // namespace
