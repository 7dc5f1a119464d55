#include "tandem/train/bf16_params.hpp"

namespace tandem::train {
namespace {

// The matrices of the layers: every matrix but the token embedding and the output head.
bool layer_matrix(const SynthTensor& t) {
  return t.matrix && t.name != "token_embd.weight" && t.name != "output.weight";
}

}  // namespace

Bf16Params::Bf16Params(const ParamSet& p, kernels::ThreadPool& pool) : p_(p) {
  for (const SynthTensor& t : p.tensors())
    if (layer_matrix(t)) mats_.try_emplace(p.find(t.name));
  pack(pool);
}

void Bf16Params::pack(kernels::ThreadPool& pool) {
  for (const SynthTensor& t : p_.tensors())
    if (layer_matrix(t)) mats_.at(p_.find(t.name)).pack(p_.find(t.name), t.rows, t.cols, pool);
}

const kernels::Bf16Matrix* Bf16Params::find(const float* w) const {
  const auto it = mats_.find(w);
  return it == mats_.end() ? nullptr : &it->second;
}

size_t Bf16Params::bytes() const {
  size_t b = 0;
  for (const auto& [w, m] : mats_) b += m.bytes();
  return b;
}

size_t Bf16Params::bytes_of(const SynthSpec& spec) {
  const bool fast = kernels::bf16_products_fast();
  size_t b = 0;
  for (const SynthTensor& t : synthetic_tensors(spec))
    if (layer_matrix(t)) b += kernels::Bf16Matrix::bytes_of(t.rows, t.cols, fast);
  return b;
}

bool Bf16Params::fast() const { return !mats_.empty() && mats_.begin()->second.fast(); }

}  // namespace tandem::train
