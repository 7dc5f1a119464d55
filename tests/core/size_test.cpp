#include <gtest/gtest.h>

#include "tandem/core/size.hpp"

using tandem::parse_size;

TEST(ParseSize, UnitsAndForms) {
  EXPECT_EQ(parse_size("1048576"), 1048576u);
  EXPECT_EQ(parse_size("100B"), 100u);
  EXPECT_EQ(parse_size("4K"), 4096u);
  EXPECT_EQ(parse_size("4KiB"), 4096u);
  EXPECT_EQ(parse_size("4kb"), 4000u);
  EXPECT_EQ(parse_size("512MiB"), 512u << 20);
  EXPECT_EQ(parse_size("2G"), 2ull << 30);
  EXPECT_EQ(parse_size("1.5G"), 3ull << 29);
  EXPECT_EQ(parse_size("1.5 GB"), 1500000000u);
  EXPECT_EQ(parse_size(" 3T "), 3ull << 40);
}

TEST(ParseSize, RejectsMalformed) {
  for (const char* bad : {"", "G", "-1G", "1X", "1GiBB", "abc", "1..5G", "1e3", "99999999T", "1 2"})
    EXPECT_FALSE(parse_size(bad).has_value()) << bad;
}

TEST(FormatSize, Readable) {
  EXPECT_EQ(tandem::format_size(100), "100 B");
  EXPECT_EQ(tandem::format_size(1536), "1.5 KiB");
  EXPECT_EQ(tandem::format_size(3.0 * (1 << 30)), "3.0 GiB");
}
