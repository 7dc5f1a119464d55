#pragma once
// Synthetic test models (tests linked with the model module).
#include <string>

#include "support/test_paths.hpp"
#include "tandem/model/synth.hpp"

namespace tandem::test {

// Writes a synthetic model of shape s to temp_dir()/name.gguf and returns its path.
inline std::string write_test_model(const std::string& name, const SynthSpec& s) {
  const std::string path = temp_dir() + "/" + name + ".gguf";
  write_synthetic_model(s, path);
  return path;
}

}  // namespace tandem::test
