// The per-tensor type rules of the quantization recipes (quant_recipe.hpp).
#include "tandem/model/quant_recipe.hpp"

#include <algorithm>
#include <cctype>

namespace tandem {
namespace {

constexpr QuantRecipe kRecipes[] = {
    {"q4_0", DType::Q4_0, 2},    {"q4_1", DType::Q4_1, 3},     {"q5_0", DType::Q5_0, 8},
    {"q5_1", DType::Q5_1, 9},    {"q8_0", DType::Q8_0, 7},     {"q2_k", DType::Q2_K, 10},
    {"q3_k_s", DType::Q3_K, 11}, {"q3_k_m", DType::Q3_K, 12},  {"q3_k_l", DType::Q3_K, 13},
    {"q4_k_s", DType::Q4_K, 14}, {"q4_k_m", DType::Q4_K, 15},  {"q5_k_s", DType::Q5_K, 16},
    {"q5_k_m", DType::Q5_K, 17}, {"q6_k", DType::Q6_K, 18},    {"iq4_nl", DType::IQ4_NL, 25},
};

enum class Role { Output, TokenEmbd, AttnV, AttnK, AttnQ, AttnOutput, FfnUp, FfnGate, FfnDown, Other };

Role role_of(std::string_view n) {
  const auto has = [&n](std::string_view s) { return n.find(s) != std::string_view::npos; };
  if (n == "output.weight") return Role::Output;
  if (n == "token_embd.weight") return Role::TokenEmbd;
  // A fused QKV projection is treated as V (the most sensitive of the three).
  if (has("attn_qkv.weight") || has("attn_v.weight")) return Role::AttnV;
  if (has("attn_k.weight")) return Role::AttnK;
  if (has("attn_q.weight")) return Role::AttnQ;
  if (has("attn_output.weight")) return Role::AttnOutput;
  if (has("ffn_up")) return Role::FfnUp;
  if (has("ffn_gate")) return Role::FfnGate;
  if (has("ffn_down")) return Role::FfnDown;
  return Role::Other;
}

// Matrices named *weight, norms excepted.
bool quantizable(const RecipeTensor& t) {
  const std::string_view n = t.name;
  return t.n_dims >= 2 && n.ends_with("weight") && n.find("_norm.weight") == std::string_view::npos;
}

// The layers that get more bits in the M mixes: the first and last eighth, and every
// third layer between.
bool more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// A type whose block does not divide the row length falls back to a type of blocks of
// 32, then to F16.
DType fallback(DType t, int64_t cols) {
  if (cols % info(t).block_size == 0) return t;
  switch (t) {
    case DType::Q2_K:
    case DType::Q3_K: t = DType::Q4_0; break;
    case DType::Q4_K: t = DType::Q5_0; break;
    case DType::Q5_K: t = DType::Q5_1; break;
    case DType::Q6_K: t = DType::Q8_0; break;
    default: break;
  }
  return cols % info(t).block_size == 0 ? t : DType::F16;
}

bool is(const QuantRecipe& r, std::string_view name) { return r.name == name; }

}  // namespace

std::span<const QuantRecipe> quant_recipes() { return kRecipes; }

std::optional<QuantRecipe> find_quant_recipe(std::string_view name) {
  std::string s(name);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const QuantRecipe& r : kRecipes)
    if (r.name == s) return r;
  return std::nullopt;
}

std::string quant_recipe_names() {
  std::string s;
  for (const QuantRecipe& r : kRecipes) s += (s.empty() ? "" : ", ") + std::string(r.name);
  return s;
}

std::vector<DType> recipe_types(const QuantRecipe& r, std::span<const RecipeTensor> tensors,
                                int64_t n_layer, int64_t gqa, bool pure) {
  int64_t n_attn_v = 0;
  bool tied = true;  // until an output matrix is seen
  for (const RecipeTensor& t : tensors) {
    const Role role = role_of(t.name);
    n_attn_v += role == Role::AttnV;
    if (role == Role::Output) tied = false;
  }
  int64_t i_attn_v = 0, i_ffn_down = 0;
  std::vector<DType> out;
  out.reserve(tensors.size());
  for (const RecipeTensor& t : tensors) {
    if (!quantizable(t)) {
      out.push_back(t.type);
      continue;
    }
    DType ty = r.base;
    const Role role = role_of(t.name);
    if (!pure) {
      if (role == Role::Output || (tied && role == Role::TokenEmbd)) {
        // The output projection keeps 6 bits (8 where that is the base type, or where
        // a super-block does not fit its rows).
        if (t.cols % info(ty).block_size != 0)
          ty = DType::Q8_0;
        else if (ty != DType::Q8_0)
          ty = DType::Q6_K;
      } else if (role == Role::AttnV) {
        if (is(r, "q2_k"))
          ty = gqa >= 4 ? DType::Q4_K : DType::Q3_K;
        else if (is(r, "q3_k_m"))
          ty = i_attn_v < 2 ? DType::Q5_K : DType::Q4_K;
        else if (is(r, "q3_k_l"))
          ty = DType::Q5_K;
        else if (is(r, "iq4_nl") && gqa >= 4)
          ty = DType::Q5_K;
        else if ((is(r, "q4_k_m") || is(r, "q5_k_m")) && more_bits(i_attn_v, n_attn_v))
          ty = DType::Q6_K;
        else if (is(r, "q4_k_s") && i_attn_v < 4)
          ty = DType::Q5_K;
        ++i_attn_v;
      } else if (role == Role::FfnDown) {
        const int64_t i = i_ffn_down, n = n_layer;
        if (is(r, "q2_k"))
          ty = DType::Q3_K;
        else if (is(r, "q3_k_m"))
          ty = i < n / 16 ? DType::Q5_K : DType::Q4_K;
        else if (is(r, "q3_k_l"))
          ty = DType::Q5_K;
        else if (is(r, "q4_k_m")) {
          if (more_bits(i, n)) ty = DType::Q6_K;
        } else if (i < n / 8 && is(r, "iq4_nl"))
          ty = DType::Q5_K;
        else if (is(r, "q5_k_m") && more_bits(i, n))
          ty = DType::Q6_K;
        else if (is(r, "q4_k_s") && i < n / 8)
          ty = DType::Q5_K;
        ++i_ffn_down;
      } else if (role == Role::AttnOutput) {
        if (is(r, "q2_k"))
          ty = DType::Q3_K;
        else if (is(r, "q3_k_m"))
          ty = DType::Q4_K;
        else if (is(r, "q3_k_l"))
          ty = DType::Q5_K;
      }
    }
    out.push_back(fallback(ty, t.cols));
  }
  return out;
}

}  // namespace tandem
