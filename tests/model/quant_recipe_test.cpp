// Quantization recipes: the per-tensor types of the mixes on the layouts of the
// synthetic presets. The expected layer patterns were read off files of the same
// names written by the GGUF peer's quantizer from the same F32 models
// (scripts/peer-quantize-check.sh compares whole files).
#include "tandem/model/quant_recipe.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace tandem {
namespace {

// The tensors of a llama-layout model in the synthetic writer's order.
std::vector<RecipeTensor> llama_tensors(int64_t L, int64_t D, int64_t F, bool tied) {
  std::vector<RecipeTensor> t;
  if (!tied) t.push_back({"output.weight", DType::F32, D, 2});
  t.push_back({"output_norm.weight", DType::F32, D, 1});
  t.push_back({"token_embd.weight", DType::F32, D, 2});
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* n : {"attn_k", "attn_output", "attn_q", "attn_v", "ffn_gate", "ffn_up"})
      t.push_back({p + n + ".weight", DType::F32, D, 2});  // rows of D (attn_output: H*d = D)
    t.push_back({p + "attn_norm.weight", DType::F32, D, 1});
    t.push_back({p + "ffn_down.weight", DType::F32, F, 2});
    t.push_back({p + "ffn_norm.weight", DType::F32, D, 1});
  }
  return t;
}

std::map<std::string, DType> types_of(const std::string& recipe, int64_t L, int64_t D, int64_t F,
                                      int64_t gqa, bool tied = false, bool pure = false) {
  const auto r = find_quant_recipe(recipe);
  EXPECT_TRUE(r.has_value()) << recipe;
  const auto t = llama_tensors(L, D, F, tied);
  const auto ty = recipe_types(*r, t, L, gqa, pure);
  std::map<std::string, DType> m;
  for (size_t i = 0; i < t.size(); ++i) m[t[i].name] = ty[i];
  return m;
}

std::string blk(int l, const char* n) { return "blk." + std::to_string(l) + "." + n + ".weight"; }

TEST(QuantRecipe, Q4KMediumGivesSixBitsToChosenLayers) {
  // The small preset: 12 layers, D 768, F 2048, 3 query heads per KV head.
  const auto m = types_of("q4_k_m", 12, 768, 2048, 3);
  const std::set<int> six = {0, 3, 6, 9, 10, 11};
  for (int l = 0; l < 12; ++l) {
    const DType want = six.count(l) ? DType::Q6_K : DType::Q4_K;
    EXPECT_EQ(m.at(blk(l, "attn_v")), want) << l;
    EXPECT_EQ(m.at(blk(l, "ffn_down")), want) << l;
    EXPECT_EQ(m.at(blk(l, "attn_q")), DType::Q4_K) << l;
    EXPECT_EQ(m.at(blk(l, "ffn_up")), DType::Q4_K) << l;
    EXPECT_EQ(m.at("blk." + std::to_string(l) + ".attn_norm.weight"), DType::F32);
  }
  EXPECT_EQ(m.at("output.weight"), DType::Q6_K);
  EXPECT_EQ(m.at("token_embd.weight"), DType::Q4_K);
}

TEST(QuantRecipe, Q3KMediumAndQ2K) {
  const auto m = types_of("q3_k_m", 12, 768, 2048, 3);
  EXPECT_EQ(m.at(blk(0, "attn_v")), DType::Q5_K);
  EXPECT_EQ(m.at(blk(1, "attn_v")), DType::Q5_K);
  EXPECT_EQ(m.at(blk(2, "attn_v")), DType::Q4_K);
  EXPECT_EQ(m.at(blk(0, "ffn_down")), DType::Q4_K);  // 12 / 16 = 0 layers get Q5_K
  EXPECT_EQ(m.at(blk(5, "attn_output")), DType::Q4_K);
  EXPECT_EQ(m.at(blk(5, "attn_q")), DType::Q3_K);
  EXPECT_EQ(m.at("output.weight"), DType::Q6_K);
  const auto q2 = types_of("q2_k", 12, 768, 2048, 3);
  EXPECT_EQ(q2.at(blk(4, "attn_v")), DType::Q3_K);
  EXPECT_EQ(q2.at(blk(4, "ffn_down")), DType::Q3_K);
  EXPECT_EQ(q2.at(blk(4, "attn_output")), DType::Q3_K);
  EXPECT_EQ(q2.at(blk(4, "ffn_gate")), DType::Q2_K);
  EXPECT_EQ(types_of("q2_k", 12, 768, 2048, 4).at(blk(4, "attn_v")), DType::Q4_K);
}

// Rows a super-block does not divide (the tiny preset: D 288) fall back to blocks of 32;
// the output keeps 8 bits; a tied embedding is treated as the output.
TEST(QuantRecipe, FallbacksForRowsOfOtherLengths) {
  // The tiny preset: 6 layers; layers 2 and 5 get 6 bits.
  const auto m = types_of("q4_k_m", 6, 288, 768, 1);
  EXPECT_EQ(m.at(blk(0, "attn_q")), DType::Q5_0);     // Q4_K rows of 288
  EXPECT_EQ(m.at(blk(0, "attn_v")), DType::Q5_0);
  EXPECT_EQ(m.at(blk(2, "attn_v")), DType::Q8_0);     // Q6_K rows of 288
  EXPECT_EQ(m.at(blk(5, "attn_v")), DType::Q8_0);
  EXPECT_EQ(m.at(blk(1, "ffn_down")), DType::Q4_K);   // rows of F = 768
  EXPECT_EQ(m.at(blk(2, "ffn_down")), DType::Q6_K);
  EXPECT_EQ(m.at("output.weight"), DType::Q8_0);
  const auto t = types_of("q4_k_m", 12, 768, 2048, 3, /*tied=*/true);
  EXPECT_EQ(t.at("token_embd.weight"), DType::Q6_K);
  const auto p = types_of("q6_k", 6, 288, 768, 1, false, /*pure=*/true);
  EXPECT_EQ(p.at("output.weight"), DType::Q8_0);
  EXPECT_EQ(p.at(blk(0, "ffn_down")), DType::Q6_K);
}

TEST(QuantRecipe, NamesAndPureRecipes) {
  EXPECT_TRUE(find_quant_recipe("Q4_K_M").has_value());
  EXPECT_FALSE(find_quant_recipe("q4_k_x").has_value());
  EXPECT_NE(quant_recipe_names().find("q5_k_m"), std::string::npos);
  const auto m = types_of("q4_k_m", 12, 768, 2048, 3, false, /*pure=*/true);
  for (const auto& [name, type] : m)
    EXPECT_EQ(type, name.find("_norm") != std::string::npos ? DType::F32 : DType::Q4_K) << name;
}

}  // namespace
}  // namespace tandem
