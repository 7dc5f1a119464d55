#pragma once
// Helpers shared by the kernels tests: random data, weights in every storage type,
// and a loop over the instruction sets this CPU supports.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/isa.hpp"
#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/quant.hpp"

namespace tandem::kernels::test {

inline std::vector<float> random_vec(std::mt19937& rng, size_t n, float lo = -1.0f,
                                     float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// A rows x cols weight of type t made from random values, rows padded by pad bytes.
struct TestWeight {
  std::vector<uint8_t> bytes;
  Weight w;
  // Row r as f32 (the values the kernels must use).
  std::vector<float> row(int64_t r) const {
    std::vector<float> out(size_t(w.cols));
    dequantize_row(w.type, bytes.data() + size_t(r) * w.row_stride, out.data(), w.cols);
    return out;
  }
};

inline TestWeight make_weight(std::mt19937& rng, DType t, int64_t rows, int64_t cols,
                              size_t pad = 8) {
  TestWeight tw;
  tw.w.type = t;
  tw.w.rows = rows;
  tw.w.cols = cols;
  tw.w.row_stride = row_bytes(t, cols) + pad;
  tw.bytes.assign(tw.w.row_stride * size_t(rows), 0xAB);  // no slack: ASan sees over-reads
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<float> v = random_vec(rng, size_t(cols));
    quantize_row(t, v.data(), tw.bytes.data() + size_t(r) * tw.w.row_stride, cols);
  }
  tw.w.data = tw.bytes.data();
  return tw;
}

// A packed copy of a weight: exactly packed_size bytes, 64-byte aligned (ASan sees
// reads past its end).
struct FreeBytes {
  void operator()(uint8_t* p) const { std::free(p); }
};
using PackedBuf = std::unique_ptr<uint8_t, FreeBytes>;

// w with a packed copy (kernels::pack_weight) in buf; false (w unchanged) where the
// kernels in use have no packed form of w's type.
inline bool attach_packed(Weight& w, PackedBuf& buf) {
  const size_t n = packed_size(w);
  if (n == 0) return false;
  buf.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64)));
  std::memset(buf.get(), 0xCD, n);
  w.packed_layout = pack_weight(w, buf.get());
  w.packed = buf.get();
  return true;
}

// Every weight-matrix type of the traits table (core/dtype.hpp), in table order: the
// tests that loop over it cover a type added there without naming it.
inline const std::vector<DType>& all_weight_types() {
  static const std::vector<DType> types = [] {
    std::vector<DType> v;
    for (const DTypeInfo& i : dtype_table())
      if (i.matrix) v.push_back(i.type);
    return v;
  }();
  return types;
}

// The kernels in use for weights of type t (null: none, which matmul rejects).
inline const detail::TypeKernels* kernels_of(DType t) {
  return detail::type_kernels(detail::isa(), t);
}
// Whether matmul of t runs on 8-bit activations now (the type has integer tiles in the
// kernels in use, and they are switched on).
inline bool int8_path(DType t) {
  const detail::TypeKernels* e = kernels_of(t);
  return detail::int8_activations() && e && e->qtile;
}
// Whether the kernels in use have a packed layout for t.
inline bool has_packed(DType t) {
  const detail::TypeKernels* e = kernels_of(t);
  return e && e->pack;
}

// A column count written for blocks of 32 (a multiple of 32) as the same number of
// blocks of t: unchanged for plain types and blocks of 32, cols / 32 super-blocks of
// 256 for the K-quants.
inline int64_t block_cols(DType t, int64_t cols) {
  const int bs = info(t).block_size;
  return bs == 1 ? cols : cols / 32 * bs;
}

// Runs body(name) once per instruction set the CPU supports, with that set in use;
// restores the default afterwards.
template <typename Body>
void for_each_isa(Body&& body) {
  const std::string saved = detail::isa().name;
  for (const char* name : {"avx512", "avx2", "generic"}) {
    if (!detail::force_isa(name)) continue;
    SCOPED_TRACE(std::string("isa ") + name);
    body(std::string(name));
  }
  detail::force_isa(saved);
}

}  // namespace tandem::kernels::test
