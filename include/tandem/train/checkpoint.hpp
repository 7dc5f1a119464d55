#pragma once
// A training run's folder: checkpoint.gguf (the weights, f32: loads in generate, logits
// and serve as any model), optimizer.bin (AdamW's moments and step) and state.json (the
// step, the run's settings and a hash of each of the two files), each written to a
// temporary file and renamed, in that order. A kill at any moment leaves the previous
// checkpoint.gguf or the new one, whole; a resume checks that the three files belong to
// the same step and refuses, naming the file, when they do not.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "tandem/train/optimizer.hpp"
#include "tandem/train/params.hpp"

namespace tandem::train {

std::string checkpoint_model_path(const std::string& dir);
std::string checkpoint_state_path(const std::string& dir);

// Writes the checkpoint of `step` (settings: the run's options, stored for the resume).
void save_checkpoint(const std::string& dir, const ParamSet& p, const Optimizer& opt,
                     int64_t step, const nlohmann::json& settings);

struct CheckpointState {
  int64_t step = 0;
  nlohmann::json settings;
};
// Reads state.json of dir (throws Error(BadInput) naming the file when missing or bad).
CheckpointState read_checkpoint_state(const std::string& dir);
// Loads the weights and the optimizer of dir into p and opt (shaped as the checkpoint's
// model); throws Error(BadInput) naming the file on a mismatch with state.json.
void load_checkpoint(const std::string& dir, ParamSet& p, Optimizer& opt);

}  // namespace tandem::train
