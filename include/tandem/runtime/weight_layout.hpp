#pragma once
// Where the weights live for the kernels in use: the model module gives views of the
// file as it stores them; the runtime decides their layout.
#include <memory>
#include <string>

#include "tandem/model/model.hpp"

namespace tandem {

// Every Q8_0/Q4_0 matrix the kernels in use read faster from a layout of their own gets
// a packed copy (kernels::pack_weight); every other matrix and the norm and bias vectors
// a plain copy, so that all of them live in one arena of huge pages. The mapping stays,
// dropped from the process but for the embedding (get_rows reads it there).
// TANDEM_NO_REPACK=1 turns it off (A/B measurement).
void lay_out_weights(Model& model);

// Model::load, then lay_out_weights: a model ready for the engine.
std::unique_ptr<Model> load_model(const std::string& path);

}  // namespace tandem
