// Scalar row conversions of each type (the functions of its traits entry, row_codecs.hpp);
// the block rules are documented in quant_rows.hpp.
#include "tandem/core/quant_rows.hpp"

#include <cmath>
#include <cstring>

#include "tandem/core/error.hpp"
#include "tandem/core/fp16.hpp"
#include "core/block_codes.hpp"
#include "core/row_codecs.hpp"

namespace tandem {
namespace {

void check_row(DType t, int64_t n) {
  TD_CHECK(n >= 0);
  TD_CHECK(n % info(t).block_size == 0);
}

[[noreturn]] void no_row_codec(DType t) {
  fail(ErrorKind::Internal, "no row conversion for tensor type {}", dtype_name(t));
}

void encode_q8_0(const float* x, uint8_t* out, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b) {
    const float* v = x + b * kQBlock;
    float amax = 0.0f;
    for (int j = 0; j < kQBlock; ++j) {
      const float a = std::fabs(v[j]);
      if (a > amax) amax = a;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 blk{};
    blk.d = f32_to_fp16(d);
    for (int j = 0; j < kQBlock; ++j) {
      const float scaled = v[j] * id;  // separate statement: no fused multiply-add
      blk.qs[j] = static_cast<int8_t>(std::roundf(scaled));
    }
    std::memcpy(out + b * sizeof(BlockQ8_0), &blk, sizeof blk);
  }
}

void encode_q4_0(const float* x, uint8_t* out, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b) {
    const float* v = x + b * kQBlock;
    const float d = detail::signed_absmax(v, kQBlock) / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t q[kQBlock];
    for (int j = 0; j < kQBlock; ++j) q[j] = detail::biased_code(v[j], id, 8.5f, 15);
    BlockQ4_0 blk{};
    blk.d = f32_to_fp16(d);
    detail::pack_codes(q, blk.qs);
    std::memcpy(out + b * sizeof(BlockQ4_0), &blk, sizeof blk);
  }
}

}  // namespace

namespace detail {

void f32_row_to_f32(const void* src, float* dst, int64_t n) {
  if (n) std::memcpy(dst, src, size_t(n) * sizeof(float));
}

void f32_row_from_f32(const float* src, void* dst, int64_t n) {
  if (n) std::memcpy(dst, src, size_t(n) * sizeof(float));
}

void f16_row_to_f32(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = fp16_to_f32(h);
  }
}

void f16_row_from_f32(const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_fp16(src[i]);
    std::memcpy(p + 2 * i, &h, 2);
  }
}

void bf16_row_to_f32(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = bf16_to_f32(h);
  }
}

void bf16_row_from_f32(const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_bf16(src[i]);
    std::memcpy(p + 2 * i, &h, 2);
  }
}

void q8_0_row_to_f32(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    BlockQ8_0 blk;
    std::memcpy(&blk, p + b * sizeof blk, sizeof blk);
    const float d = fp16_to_f32(blk.d);
    for (int j = 0; j < kQBlock; ++j) dst[b * kQBlock + j] = d * float(blk.qs[j]);
  }
}

void q8_0_row_from_f32(const float* src, void* dst, int64_t n) {
  encode_q8_0(src, static_cast<uint8_t*>(dst), n / kQBlock);
}

void q4_0_row_to_f32(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    BlockQ4_0 blk;
    std::memcpy(&blk, p + b * sizeof blk, sizeof blk);
    const float d = fp16_to_f32(blk.d);
    float* o = dst + b * kQBlock;
    for (int j = 0; j < kQBlock / 2; ++j) {
      o[j] = d * float((blk.qs[j] & 0x0f) - 8);
      o[j + kQBlock / 2] = d * float((blk.qs[j] >> 4) - 8);
    }
  }
}

void q4_0_row_from_f32(const float* src, void* dst, int64_t n) {
  encode_q4_0(src, static_cast<uint8_t*>(dst), n / kQBlock);
}

}  // namespace detail

// Both through the type's entry of the traits table (dtype.cpp).
void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  check_row(t, n);
  const RowToF32 fn = info(t).to_f32;
  if (!fn) no_row_codec(t);
  fn(src, dst, n);
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  check_row(t, n);
  const RowFromF32 fn = info(t).from_f32;
  if (!fn) no_row_codec(t);
  fn(src, dst, n);
}

}  // namespace tandem
