#pragma once
// Backward of the forward ops (ops.hpp) and the training-only kernels: gradients of dense
// f32 products, the output head fused with cross-entropy, causal flash attention, and the
// AdamW update. Each op has a plain scalar reference in namespace kernels::ref
// (backward_reference.hpp) with the same contract; tests check the references against central
// finite differences in float64 and the optimized ops against the references on every
// instruction set. Shapes: N tokens (m rows), D model dim, V vocab, H query heads, G KV
// heads, d head dim. "dX" is the gradient of the loss with respect to X.
//
// Accumulation: a gradient named "accumulated" (+=) is added to what the buffer holds (the
// weight gradients of a step, summed over its sequences and layers' uses); one named
// "written" is overwritten.
#include <cstdint>

#include "tandem/kernels/ops.hpp"
#include "tandem/kernels/thread_pool.hpp"

namespace tandem::kernels {

// ---- dense f32 products y[i][r] = sum_c x[i][c] * w[r][c] (w [rows][cols]) ----

// dx[i][c] = sum_r dy[i][r] * w[r][c] for i < m: dy [m][rows], dx [m][cols] (written, or
// accumulated when accumulate is true). w is read as stored: no transposed copy is made.
void matmul_dx(const float* w, int64_t rows, int64_t cols, const float* dy, int64_t m,
               float* dx, bool accumulate, ThreadPool& pool);

// dw[r][c] += sum_i dy[i][r] * x[i][c] over i < m: dy [m][rows], x [m][cols], dw [rows][cols]
// (accumulated).
void matmul_dw(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
               float* dw, ThreadPool& pool);

// ---- elementwise and per-row ops ----

// Embedding: out[i] = w[ids[i]]. dw[ids[i]][:] += dy[i][:] (accumulated; repeated ids add
// up). dy [m][cols], dw [rows][cols]; ids < rows is the caller's contract.
void get_rows_backward(const int32_t* ids, int64_t m, const float* dy, int64_t cols, float* dw);

// RMSNorm y = x * r * w, r = 1/sqrt(mean(x^2) + eps), over rows of n:
//   dx = r * (dy*w - x * r^2 * mean(dy*w*x))   (written; dx may equal dy)
//   dw[j] += sum over rows of dy[j] * x[j] * r (accumulated; dw may be null: not wanted).
void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                      int64_t m, int64_t n, float eps, ThreadPool& pool);

// Rotary embedding is a rotation per pair, so its backward rotates the gradient back: in
// place on dx [m][heads][d] (row stride heads*d) with the same spec and positions as the
// forward rope() call.
void rope_backward(float* dx, int64_t m, int heads, int d, const RopeSpec& r,
                   const int32_t* pos, ThreadPool& pool);

// out = silu(gate) * up: dgate = dout * up * silu'(gate), dup = dout * silu(gate) (both
// written, n values). Element i is read from every input before it is written, so dgate
// and dup may each equal any input (not each other).
void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate,
                     float* dup, int64_t n);

// ---- output head fused with cross-entropy ----

// loss = sum over tokens i with target[i] >= 0 of -log softmax(logits_i)[target[i]], where
// logits_i[v] = sum_c x[i][c] * w[v][c] (w [V][D], x [m][D]). The logits are made for
// block_tokens tokens at a time ([block_tokens][V] floats held, never [m][V]); per block
// the gradient g = (softmax - onehot(target)) * grad_scale gives
//   dx[i][:] = sum_v g[i][v] * w[v][:]   (written; rows of ignored tokens are zeros)
//   dw[v][:] += sum_i g[i][v] * x[i][:]  (accumulated)
// dx and dw may each be null (not wanted); both null: the loss only.
// Returns the loss (sum, not mean, in double) and, when correct is set, the number of
// counted tokens whose target has the highest logit (ties count for the lowest id).
struct CrossEntropyArgs {
  const float* x = nullptr;         // [m][D]
  const float* w = nullptr;         // [V][D]
  const int32_t* target = nullptr;  // [m]; < 0: token not counted
  int64_t m = 0, D = 0, V = 0;
  float grad_scale = 1.0f;          // usually 1 / (tokens counted in the whole step)
  float* dx = nullptr;              // [m][D]
  float* dw = nullptr;              // [V][D]
  int64_t block_tokens = 64;
  int64_t* correct = nullptr;
};
double cross_entropy(const CrossEntropyArgs& a, ThreadPool& pool);

// ---- attention ----

// Backward of softmax attention (attention() with q, k, v contiguous f32, no pages, no
// softcap): given the forward's out and lse (ops.hpp AttentionArgs: [n_q][H][d] and
// [n_q][H]) and dout, adds
//   dq [n_q][H][d], dk and dv [n_kv][G][d] (rows kv_stride floats apart, as k and v)
// for the keys in this call (accumulated). out and lse are those of the whole attention
// (all keys the query sees, possibly over several calls, e.g. the blocks of a ring), so
// calls over disjoint key sets sum to the full gradient. Scores are recomputed per tile
// from q, k and lse (memory O(n_q + n_kv)); tiles wholly masked by causality are
// skipped; GQA: the dk/dv of a KV head sum over its H/G query heads. The sliding window
// and causal rule are those of AttentionArgs. A query whose lse is -inf (it sees no key)
// adds nothing. softcap > 0 or pages are rejected with an Error. The floats of a k/v row
// past G*d are left as they are in dk and dv.
struct AttentionBackwardArgs {
  AttentionArgs fwd;                 // q, q_pos, n_q, k, v, kv_pos, n_kv, kv_stride, H, G, d,
                                     // scale, causal, window; out and lse as described above
                                     // (out is read only when delta is null)
  const float* dout = nullptr;       // [n_q][H][d]
  const float* delta = nullptr;      // optional [n_q][H]: sum_e dout*out per query and head
                                     // (computed here when null)
  float* dq = nullptr;               // [n_q][H][d]      accumulated
  float* dk = nullptr;               // [n_kv][kv_stride] accumulated ([G][d] of each row)
  float* dv = nullptr;               // same layout as dk
};
void attention_backward(const AttentionBackwardArgs& a, ThreadPool& pool);
// The most bytes attention_backward holds between calls (per-thread buffers it keeps,
// the largest being K and V transposed per key tile and the threads' partial dK/dV) for a
// call of n_q queries against n_kv keys, G KV heads of d, on `threads` threads.
size_t attention_backward_scratch_bytes(int64_t n_q, int64_t n_kv, int G, int d, int threads);

// delta[i][h] = sum_e dout[i][h][e] * out[i][h][e] ([n_q][H]; written).
void attention_delta(const float* out, const float* dout, int64_t n_q, int H, int d,
                     float* delta);

// ---- optimizer ----

// One AdamW step on n parameters (all f32): with g = grad * grad_scale,
//   m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g^2;
//   p -= lr * (m / (1 - beta1^step) / (sqrt(v / (1 - beta2^step)) + eps) + weight_decay * p)
// step counts from 1.
struct AdamW {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f;
};
void adamw_step(float* p, const float* grad, float* m, float* v, int64_t n, const AdamW& h,
                int64_t step, float grad_scale, ThreadPool& pool);

// sum of x[i]^2 in double (for the global gradient norm); the same value for every thread
// count (and instruction set).
double sum_squares(const float* x, int64_t n, ThreadPool& pool);

}  // namespace tandem::kernels
