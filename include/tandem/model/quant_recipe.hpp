#pragma once
// Quantization recipes: the type of each tensor of a model file quantized to a named
// mix (q4_k_m, q3_k_m, ...), chosen by tensor role, layer and shape with the rules
// GGUF quantizers use without an importance matrix, so a file written with a recipe
// has the tensor types of a file of that name from another tool.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/core/dtype.hpp"

namespace tandem {

struct QuantRecipe {
  std::string_view name;  // "q4_k_m"
  DType base;             // the type most matrices get
  uint32_t file_type;     // GGUF general.file_type
};

// Every recipe, in the order messages list them.
std::span<const QuantRecipe> quant_recipes();
// nullopt for an unknown name (case-insensitive).
std::optional<QuantRecipe> find_quant_recipe(std::string_view name);
// "q2_k, q3_k_s, ..." for messages.
std::string quant_recipe_names();

// A tensor as a recipe sees it: its name, its stored type before quantization (F32 or
// F16 for matrices), dimensions (ne[0] the row length) and count of dimensions.
struct RecipeTensor {
  std::string name;
  DType type = DType::F32;
  int64_t cols = 0;
  int n_dims = 2;
};

// The type of every tensor, in file order (the order matters: the rules count attention
// V and FFN down tensors as they come). n_layer: the model's block count; gqa: query
// heads per KV head. pure: every quantizable tensor gets the base type (no mix rules),
// with only the fallback for rows the base type's block does not divide.
std::vector<DType> recipe_types(const QuantRecipe& r, std::span<const RecipeTensor> tensors,
                                int64_t n_layer, int64_t gqa, bool pure = false);

}  // namespace tandem
