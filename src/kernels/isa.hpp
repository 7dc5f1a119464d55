#pragma once
// Private: the hot inner kernels, compiled once per instruction set (AVX-512, AVX2,
// portable scalar) and picked at run time from the CPU's features.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tandem/core/dtype.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem::kernels::detail {

// Most tokens (x rows) one matmul tile handles.
inline constexpr int kTileTokens = 4;
// Most tokens one integer matmul tile (QTileFn) may be given: the table's qtile_tokens.
inline constexpr int kMaxQTileTokens = 128;
// Keys an attention unit scores at once.
inline constexpr int kAttnBlock = 64;
// Most sub-tiles (of FlashKernels::tile_q queries each) one flash-attention tile holds:
// they share each block of K and V rows while it is in the core's own caches.
inline constexpr int kAttnSubTiles = 4;

// y[t][r] = dot(x[t], W[r]) (+ bias[r]) for t < mt (1..kTileTokens), r < nr (1..tile_rows
// of the table); w points at row 0 of the tile, x row t at x + t*x_stride, y row t at
// y + t*y_stride.
using TileFn = void (*)(const uint8_t* w, size_t row_stride, int nr, const float* x,
                        int64_t x_stride, int mt, int64_t cols, float* y, int64_t y_stride,
                        const float* bias);

// Activations quantized to 8 bits for the integer matmul of weights with integer tiles
// (the quantize_x of the weight type's TypeKernels, once per activation row). Rule per block
// of 32: d = max|x| / 127, q = nearest integer to x / d (0 when d is 0), so
// |x - d*q| <= d/2. Row layouts:
//   plain (quantize_x_plain; generic, AVX2): cols int8 q, then cols/32 f32 d.
//   K-quants on generic and AVX2 (kquant_int_plain.inc): per super-block of 256, its
//     256 q, its 8 d, then 16 f32 sums d * (sum of q) per 16 values.
//   pairs (AVX-512, its quantize_pairs): per pair of blocks (b, b+1; a missing b+1 is
//     zeros) one QxPair: 64 bytes of q, the f32 d of each int32 lane (4 bytes of q), and
//     per lane corr, zero except in the first lane of each block (Q8_0: lanes 0 and 8, Q4_0:
//     lanes 0 and 4), which holds -k * (sum of the block's 32 q) (k = 128 for Q8_0, 8
//     for Q4_0, 16 for Q5_0, 128 for IQ4_NL: the unsigned-weight offset of the integer
//     product; 1 for Q4_1 and Q5_1, whose tiles also take the sum from it); d and corr
//     of block b (b + 1) are thus at lane 0 (8 for Q8_0, 4 for the others). Q8_0: q of
//     b then of b+1. The others: b[0..15], b+1[0..15], b[16..31], b+1[16..31] (the
//     order of unpacked nibbles).
struct QxPair {
  int8_t q[64];
  float d[16];
  int32_t corr[16];
};
static_assert(sizeof(QxPair) == 192);
inline int64_t qx_row_bytes(int64_t cols) {
  return (int64_t(sizeof(QxPair)) * ((cols / 32 + 1) / 2) + 4 * cols / 32 + cols + 63) / 64 * 64;
}
// Writes one activation row of cols (a multiple of 32) values, qx_row_bytes(cols) at most.
using QuantizeXFn = void (*)(const float* x, int64_t cols, uint8_t* out);
void quantize_x_plain(const float* x, int64_t cols, uint8_t* out);

// F32 weights against activations with tokens in vector lanes (matmul_fused transposes
// them into groups of lane_tokens, the table's vector width): group g holds
// xl[c * lane_tokens + j] = x[g * lane_tokens + j][c]. The tile takes up to kLaneRows
// weight rows (broadcast one value at a time) against the group at xl, mt in
// 1..lane_tokens tokens (lanes past mt hold zeros), so a weight row is read once for
// all of the group's tokens and no horizontal sums are needed.
inline constexpr int kLaneRows = 8;
using LanesTileFn = void (*)(const uint8_t* w, size_t row_stride, int nr, const float* xl,
                             int mt, int64_t cols, float* y, int64_t y_stride,
                             const float* bias);

// TileFn over quantized activations: x row t at xq + t*xq_stride (bytes), with
// mt in 1..qtile_tokens and nr in 1..qtile_rows of the table.
using QTileFn = void (*)(const uint8_t* w, size_t row_stride, int nr, const uint8_t* xq,
                         int64_t xq_stride, int mt, int64_t cols, float* y, int64_t y_stride,
                         const float* bias);

// Weights repacked once at load (kernels::pack_weight) into the PackFormat of their
// type's TypeKernels, by layout id:
//   kPackVnni16 (every type with integer tiles, AVX-512): rows in panels of 16 (the last
//   padded with zero rows), a panel's pairs of blocks (b, b+1; a missing b+1 is zeros)
//   one after another, each pair: 64 bytes of scales (the 16 fp16 d of block b, then of
//   b+1, row i at [i]), for types with a minimum 64 more of their fp16 m in the same
//   order, then per block its values, 64 bytes per vector, int32 lane i = row i:
//     Q8_0: 8 vectors, vector j = values 4j..4j+3 plus 128 (unsigned);
//     the nibble types (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL): 4 vectors, vector j = the
//     block's bytes 4j..4j+3 of qs (low nibbles values 4j..4j+3, high nibbles values
//     16+4j..16+4j+3, as stored); Q5_0 and Q5_1 a fifth vector of their fifth bits,
//     byte k of a lane holding in bit g that of value 4g + k.
//   A panel (vnni16_pair_bytes per pair) is panel_bytes apart from the next.
enum PackLayout { kPackNone = 0, kPackVnni16 = 1 };
inline constexpr int kPackRows = 16;  // rows per panel, every layout
// vectors: per block (4 or 5 for nibbles, 8 for Q8_0).
inline constexpr int64_t vnni16_pair_bytes(int vectors, bool min) {
  return (min ? 128 : 64) + 2 * 64 * vectors;
}
// A packed layout of one type: its id (MatrixView::packed_layout, never kPackNone),
// the bytes of one panel of kPackRows rows of cols values, and the function writing w
// (of that type, rows > 0) there: panels * panel_bytes(cols) bytes at out.
struct PackFormat {
  int layout;
  int64_t (*panel_bytes)(int64_t cols);
  void (*pack)(const Weight& w, uint8_t* out);
};
// What a kPackVnni16 panel holds of one block of a type: values writes its fp16 d, its
// fp16 m (min) and the 4 * vectors bytes of its vectors (row i's int32 of each, in order).
struct Vnni16Values {
  int vectors;
  bool min;
  void (*values)(const uint8_t* blk, uint8_t* codes, uint16_t& d, uint16_t& m);
};
// Writes w in kPackVnni16 (matmul.cpp; the formats are the vector layer's).
void pack_vnni16(const Weight& w, uint8_t* out, const Vnni16Values& v);

// QTileFn over weights in the table's packed layout: pk points at the panel of row 0
// (a multiple of kPackRows), panels panel_stride bytes apart.
using PackedQTileFn = void (*)(const uint8_t* pk, size_t panel_stride, int nr,
                               const uint8_t* xq, int64_t xq_stride, int mt, int64_t cols,
                               float* y, int64_t y_stride, const float* bias);

// Per-thread buffers of an attention unit: s [H][kAttnBlock], mx [H], l [H],
// idx [kAttnBlock]; kbuf and vbuf [kAttnBlock][G*d] where keys come from Q8_0 pages
// (rows are dequantized there), else unused.
struct AttnScratch {
  float* s;
  float* mx;
  double* l;
  int64_t* idx;
  float* kbuf;
  float* vbuf;
};

// Attention of query i over the keys [j0, j1) for every head: out [H][d] (normalized
// over those keys) and, when lse is set, lse [H] (-inf and a zero row where no key in
// the range is visible).
using AttnFn = void (*)(const AttentionArgs& a, int64_t i, int64_t j0, int64_t j1, float* out,
                        float* lse, const AttnScratch& scratch);

// Per-thread buffers of a flash-attention tile (lanes = FlashKernels::tile_q, subs up
// to kAttnSubTiles): qt [subs][H][d][lanes], s [kAttnBlock][lanes] (+ 8 floats), mx and
// l [subs][H][lanes]; kbuf and vbuf as in AttnScratch.
struct AttnTileScratch {
  float* qt;
  float* s;
  float* mx;
  float* l;
  float* kbuf;
  float* vbuf;
};

// Rows per dequantization buffer (kbuf, vbuf) of the scratch structs: G*d floats each.
inline int64_t kv_scratch_floats(const AttentionArgs& a) {
  return a.pages.tokens > 0 && a.pages.type != DType::F32 ? int64_t(kAttnBlock) * a.G * a.d : 0;
}

// Queries [i0, i0 + nq) (nq <= kAttnSubTiles * FlashKernels::tile_q) against all keys,
// every head: out and (when set) lse of those queries, as AttnFn over all keys.
using AttnTileFn = void (*)(const AttentionArgs& a, int64_t i0, int nq,
                            const AttnTileScratch& scratch);

// out[i] = silu(gate[i]) * up[i]; out may equal gate.
using SwigluFn = void (*)(const float* gate, const float* up, float* out, int64_t n);

// The matmul kernels of one instruction set for one weight type. plan_matmul picks the
// entry of the weights' type once per plan (per call, or once per shape where the graph
// keeps it) and runs, per output: packed where the weight has a copy in pack's layout,
// 8-bit activations and use_packed are on; else qtile over rows of quantize_x where
// 8-bit activations are on; else tile.
// Adding a weight type (the whole checklist is at the traits table, core/dtype.cpp):
// one add() in make_table (kernel_body.inc, which builds every instruction set's table)
// with its tile over a loader (Ld*) written against the vector layer; optionally qtile
// with its quantize_x (a QLd* over the layer's qw_/qx_/qdot for the type; activations
// in blocks of 32 as above), and a packed layout (PackFormat) with its tile where a
// layer has one (simd_avx512.inc). tests/kernels check every table has every type.
struct TypeKernels {
  TileFn tile = nullptr;              // f32 activations; set for every matrix type
  QTileFn qtile = nullptr;            // 8-bit activations; null: f32 activations only
  QuantizeXFn quantize_x = nullptr;   // the activation rows qtile and packed read
  const PackFormat* pack = nullptr;   // weights repacked at load; null: none
  PackedQTileFn packed = nullptr;     // qtile over pack's layout (set with pack)
  LanesTileFn lanes = nullptr;        // f32 activations, tokens in lanes (F32 weights)
};
// TypeKernels slots per table: GGUF type ids below this.
inline constexpr uint32_t kTypeSlots = 64;

struct IsaKernels {
  const char* name;
  int tile_rows;  // weight rows per matmul tile
  std::array<TypeKernels, kTypeSlots> types;  // by GGUF type id (see type_kernels)
  SwigluFn swiglu;
  // Integer matmul tiles (qtile, packed): most weight rows and tokens per call.
  // Larger than tile_rows x kTileTokens where the tile reuses work across them
  // (AVX-512: 32 rows x 128 tokens, rows repacked per call, see simd_avx512.inc).
  int qtile_rows, qtile_tokens;
  // Tokens per group of the lanes tiles (the vector width); used from lane_tokens / 2
  // tokens on.
  int lane_tokens = 0;
};

// The kernels of weight type t in k; null where k has no tile for t.
inline const TypeKernels* type_kernels(const IsaKernels& k, DType t) {
  const auto id = static_cast<uint32_t>(t);
  return id < kTypeSlots && k.types[id].tile ? &k.types[id] : nullptr;
}

const IsaKernels& isa_avx512();
const IsaKernels& isa_avx2();
const IsaKernels& isa_generic();

// The kernels in use: the best the CPU supports, or what TANDEM_KERNELS_ISA
// ("avx512", "avx2", "generic") asks for when set and supported.
const IsaKernels& isa();
// Whether this CPU can run the named set.
bool isa_supported(std::string_view name);
// Switches the kernels in use (tests); false when unknown or unsupported.
bool force_isa(std::string_view name);

// One row of RMSNorm: y = x / sqrt(mean(x^2) + eps) * w (y may equal x).
void rmsnorm_row(const float* x, const float* w, float* y, int64_t n, float eps);

// Whether matmul of weights with integer tiles (TypeKernels::qtile) quantizes
// the activations to 8 bits and uses integer dot products (default) or keeps them f32
// (dequantized weights, the reference behaviour). Tests switch it to cover both.
bool int8_activations();
// Whether multi-query attention uses the flash-attention tiles (default) or one unit
// per query (attn). Tests switch it to cover both.
bool flash_attention();
void set_flash_attention(bool on);
void set_int8_activations(bool on);
// Whether matmul reads a weight's packed form when it has one (default) or the original
// rows (tests compare the two).
bool use_packed();
void set_use_packed(bool on);
// Whether F32 matmuls of enough tokens use the lanes tiles (TypeKernels::lanes;
// default) or the register tiles (tests compare both with the reference; benchmarks
// time both).
bool lane_tiles();
void set_lane_tiles(bool on);

}  // namespace tandem::kernels::detail
