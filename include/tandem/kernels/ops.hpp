#pragma once
// CPU ops of the forward pass. Each op has a plain scalar reference in
// namespace tandem::kernels::ref (reference.hpp) with the same contract, and tests
// compare the two. Shapes: N tokens, H query heads, G KV heads, d head dim.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tandem/core/dtype.hpp"
#include "tandem/core/tensor.hpp"
#include "tandem/kernels/thread_pool.hpp"
#include "tandem/memory/kv_pages.hpp"

namespace tandem::kernels {

// A weight matrix: row-major [rows][cols] of any DType (see core/tensor.hpp).
using Weight = MatrixView;

// y[i][r] = sum_c x[i][c] * W[r][c] (+ bias[r] when bias != nullptr), for i < m.
// x is [m][cols], y is [m][rows], both dense f32.
// The bytes of the calling thread's buffers matmul keeps after a call of m tokens on
// `threads` threads (activations repacked for its tiles: tokens in lanes, or quantized).
size_t matmul_scratch_bytes(const Weight& w, int64_t m, int threads);
void matmul(const Weight& w, const float* x, int64_t m, float* y, ThreadPool& pool,
            const float* bias = nullptr);

// Weight repacking at load: the kernels in use (detail::isa) may read Q8_0/Q4_0
// matrices faster from a layout of their own (AVX-512 VNNI: 16 rows interleaved per
// vector). packed_size is the bytes of that form of w, 0 where the kernels have none
// (other types, other instruction sets). pack_weight writes it to out (64-byte aligned,
// packed_size(w) bytes) and returns the layout id to store in w.packed_layout, with
// w.packed = out. Products from a packed weight equal those from the original up to
// float summation order; kernels built for another layout ignore it.
size_t packed_size(const Weight& w);
int pack_weight(const Weight& w, uint8_t* out);

// Embedding lookup: out[i] = W[ids[i]] as f32, out is [m][cols]. ids must be < rows.
void get_rows(const Weight& w, const int32_t* ids, int64_t m, float* out);

// RMSNorm of m rows of n: y = x / sqrt(mean(x^2) + eps) * w. y may equal x.
void rmsnorm(const float* x, const float* w, float* y, int64_t m, int64_t n, float eps,
             ThreadPool& pool);

// Which dims of a head a rotary pair joins: pair i is (x[2i], x[2i+1]) (Adjacent: GGUF
// llama, mistral) or (x[i], x[i + n_rot/2]) (Neox: qwen2, qwen3, phi3, gemma2, gemma3).
enum class RopeStyle : uint8_t { Adjacent, Neox };

// A rotary embedding: for i < n_rot/2, pair i of each head is rotated by the angle
// pos * freq_scale * freq_base^(-2i/n_rot) / freq_factors[i] (freq_factors optional,
// [n_rot/2], e.g. a Llama 3 rope_freqs tensor; freq_scale 1/factor of linear scaling).
struct RopeSpec {
  int n_rot = 0;
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;
  const float* freq_factors = nullptr;
  RopeStyle style = RopeStyle::Adjacent;
};

// The angle of pair i at position p, in double (large positions keep their precision).
double rope_angle(const RopeSpec& r, int32_t p, int i);

// Rotary embedding in place on x [m][heads][d] (row stride heads*d) at positions pos[t].
// Dims >= n_rot are left unchanged.
void rope(float* x, int64_t m, int heads, int d, const RopeSpec& r, const int32_t* pos,
          ThreadPool& pool);

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). out may equal gate.
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// out[i] = gelu(gate[i]) * up[i], gelu(g) = g/2 * (1 + tanh(sqrt(2/pi) * (g + 0.044715 g^3)))
// (the tanh approximation). out may equal gate.
void geglu(const float* gate, const float* up, float* out, int64_t n);

// y[i] = cap * tanh(x[i] / cap) (soft-capping, cap > 0). y may equal x.
void softcap(const float* x, float* y, int64_t n, float cap);

// x[i] *= s
void scale(float* x, int64_t n, float s);

// y[i] += x[i]
void add(float* y, const float* x, int64_t n);

// The page-table view of a paged KV cache (memory/kv_pages.hpp).
using tandem::KvPage;
using tandem::KvPages;

struct AttentionArgs {
  const float* q = nullptr;      // [n_q][H][d]
  const int32_t* q_pos = nullptr;  // [n_q] global positions of the queries
  int64_t n_q = 0;
  const float* k = nullptr;      // [n_kv] rows of kv_stride floats, each [G][d]
  const float* v = nullptr;      // same layout as k
  const int32_t* kv_pos = nullptr;  // [n_kv] global positions of the keys
  int64_t n_kv = 0;
  int64_t kv_stride = 0;         // floats between consecutive tokens in k and v (>= G*d)
  int H = 0, G = 0, d = 0;       // G divides H; query head h reads KV head h / (H/G)
  float scale = 0.0f;            // usually 1/sqrt(d)
  float softcap = 0.0f;          // > 0: scores s = scale*q.k become softcap*tanh(s/softcap)
  bool causal = true;            // key j is visible to query i iff kv_pos[j] <= q_pos[i]
  int32_t window = 0;            // > 0 (with causal): and q_pos[i] - kv_pos[j] < window
  float* out = nullptr;          // [n_q][H][d]
  float* lse = nullptr;          // optional [n_q][H]: natural log of sum_j exp(s_j) over
                                 // visible keys; -inf (and out row 0) when none visible
  KvPages pages;                 // set (tokens > 0): keys come from pages; k, v, kv_pos and
                                 // kv_stride are then ignored
};

// The keys of a paged a as one contiguous run (dequantized to f32), in buffers the
// caller keeps; returns a with k, v, kv_pos and kv_stride pointing there and no pages.
// An unpaged a is returned as is. For the kernels that want contiguous keys.
struct KvGather {
  std::vector<float> k, v;
  std::vector<int32_t> pos;
};
AttentionArgs gather_kv(const AttentionArgs& a, KvGather& buf);

// Softmax attention. The partial result (out, lse) over a subset of the keys can be
// merged with other subsets by log-sum-exp weighting.
void attention(const AttentionArgs& a, ThreadPool& pool);

}  // namespace tandem::kernels
