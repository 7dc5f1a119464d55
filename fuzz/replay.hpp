#pragma once
// Replays kept fuzz inputs (tests/fuzz_regressions/<target>/*) through a fuzz entry
// function; used by the regression tests of the normal suite.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

// The folder comes from the build's configuration (tests/CMakeLists.txt), not from this
// header's path: a replay that cannot find its inputs fails instead of running none.
#ifndef TANDEM_FUZZ_REGRESSIONS_DIR
#error "TANDEM_FUZZ_REGRESSIONS_DIR must name tests/fuzz_regressions (set by tests/CMakeLists.txt)"
#endif

namespace tandem::fuzz {

inline std::filesystem::path regressions_dir() { return TANDEM_FUZZ_REGRESSIONS_DIR; }

// Every regular file under tests/fuzz_regressions/<target>/, sorted (README.md skipped).
// Empty when the folder is missing.
inline std::vector<std::filesystem::path> regression_inputs(const std::string& target) {
  std::vector<std::filesystem::path> out;
  const auto dir = regressions_dir() / target;
  if (!std::filesystem::is_directory(dir)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename() != "README.md") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Runs `entry` on each input (an exact-size heap copy, as libFuzzer passes it); a throw
// fails the test naming the file. A missing folder, or one without inputs, fails too.
template <typename Entry>
void replay(const std::string& target, Entry entry) {
  const auto dir = regressions_dir() / target;
  ASSERT_TRUE(std::filesystem::is_directory(dir))
      << target << ": no folder " << dir.string() << " (fuzz regression inputs)";
  const auto inputs = regression_inputs(target);
  ASSERT_FALSE(inputs.empty()) << target << ": no inputs in " << dir.string();
  for (const auto& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in) << path;
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
    const std::unique_ptr<uint8_t[]> copy(new uint8_t[std::max<size_t>(bytes.size(), 1)]);
    std::copy(bytes.begin(), bytes.end(), copy.get());
    try {
      entry(copy.get(), bytes.size());
    } catch (const std::exception& e) {
      ADD_FAILURE() << target << ": " << path.filename().string() << ": " << e.what();
    } catch (...) {
      ADD_FAILURE() << target << ": " << path.filename().string() << ": unknown exception";
    }
  }
  ::testing::Test::RecordProperty("inputs", int(inputs.size()));
}

}  // namespace tandem::fuzz
