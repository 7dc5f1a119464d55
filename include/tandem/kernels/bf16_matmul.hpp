#pragma once
// BF16 matrix products of training with f32 accumulation: the forward y = x W^T and the
// gradients dx = dy W and dw += dy^T x of the dense products in backward.hpp, with every
// input rounded to BF16 (round to nearest even) and every sum kept in f32.
//
// Weights: a Bf16Matrix, made from the f32 master copy once per optimizer step (the master
// stays f32). Activations (x, dy) are rounded when the kernels copy them into per-thread
// buffers. Two paths, picked when a matrix is packed (and, for matmul_dw, per call):
//   fast:     AVX-512 BF16 (VDPBF16PS: one instruction multiplies 16 pairs of BF16 values
//             and adds both products to 16 f32 sums). The weights are held twice, once per
//             product that reads them, each in panels of pairs along the product's depth
//             (the instruction's operand order); no f32 copy is made per product.
//   portable: the BF16-rounded values held as f32 and fed to the f32 kernels (the products
//             of two BF16 values are exact in f32): the same arithmetic up to the order of
//             the f32 sums, slower than plain f32 (the activations are copied first).
// bf16_products_fast() says which path a product packed now takes: fast where the CPU has
// AVX-512 BF16 and the kernels in use (TANDEM_KERNELS_ISA, detail::isa) are avx512.
// Shapes: m tokens; w [rows][cols] as in backward.hpp (y[i][r] = sum_c x[i][c] w[r][c]).
#include <cstddef>
#include <cstdint>

#include "tandem/kernels/thread_pool.hpp"

namespace tandem::kernels {

// f32 -> BF16 bits, round to nearest even, as VCVTNEPS2BF16 does: subnormal inputs become
// zero of their sign, NaN stays a (quiet) NaN, infinities stay.
uint16_t bf16_from_float(float x);
float bf16_to_float(uint16_t b);
// x rounded to the nearest BF16 value, as an f32.
inline float bf16_round(float x) { return bf16_to_float(bf16_from_float(x)); }

// Whether this CPU has AVX-512 BF16 (with the OS saving the ZMM state).
bool cpu_has_avx512_bf16();
// Whether products packed now run on AVX-512 BF16: cpu_has_avx512_bf16() and the kernels
// in use are avx512.
bool bf16_products_fast();

// A weight matrix [rows][cols] rounded to BF16 in the layouts of one path.
class Bf16Matrix {
 public:
  Bf16Matrix() = default;
  ~Bf16Matrix();
  Bf16Matrix(Bf16Matrix&& o) noexcept;
  Bf16Matrix& operator=(Bf16Matrix&& o) noexcept;
  Bf16Matrix(const Bf16Matrix&) = delete;
  Bf16Matrix& operator=(const Bf16Matrix&) = delete;

  // Rounds w (f32, row-major [rows][cols]) into this matrix, on the path of
  // bf16_products_fast() now. Storage is made on the first call and kept while the shape
  // and path stay the same (the per-step repack allocates nothing).
  void pack(const float* w, int64_t rows, int64_t cols, ThreadPool& pool);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  bool fast() const { return fast_; }
  bool empty() const { return data_ == nullptr; }
  // Bytes held.
  size_t bytes() const { return bytes_; }
  // Bytes a matrix of this shape holds on the fast (or portable) path.
  static size_t bytes_of(int64_t rows, int64_t cols, bool fast);

  // The layouts (fast: forward panels, then dx panels; portable: [rows][cols] f32).
  const void* data() const { return data_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int64_t rows_ = 0, cols_ = 0;
  bool fast_ = false;
};

// y[i][r] = sum_c x[i][c] * w[r][c] for i < m (y [m][rows], written; x [m][cols]).
void bf16_matmul(const Bf16Matrix& w, const float* x, int64_t m, float* y, ThreadPool& pool);

// dx[i][c] = sum_r dy[i][r] * w[r][c] for i < m (dy [m][rows], dx [m][cols], written or
// accumulated when accumulate is true).
void bf16_matmul_dx(const Bf16Matrix& w, const float* dy, int64_t m, float* dx,
                    bool accumulate, ThreadPool& pool);

// dw[r][c] += sum_i dy[i][r] * x[i][c] over i < m (dy [m][rows], x [m][cols], dw
// [rows][cols] f32, accumulated; its values are not rounded). Path: bf16_products_fast().
void bf16_matmul_dw(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
                    float* dw, ThreadPool& pool);

// The most bytes the three products of a [rows][cols] matrix at m tokens keep in buffers
// between calls, over all `threads` threads, on the path of bf16_products_fast() now (the
// portable path: with the f32 kernels' own).
size_t bf16_scratch_bytes(int64_t rows, int64_t cols, int64_t m, int threads);

namespace ref {
// Plain scalar references: every input rounded with bf16_round, every sum in double,
// each output rounded to f32 once (same contracts as above, on f32 weights as stored).
void bf16_matmul(const float* w, int64_t rows, int64_t cols, const float* x, int64_t m,
                 float* y);
void bf16_matmul_dx(const float* w, int64_t rows, int64_t cols, const float* dy, int64_t m,
                    float* dx, bool accumulate);
void bf16_matmul_dw(const float* dy, const float* x, int64_t m, int64_t rows, int64_t cols,
                    float* dw);
}  // namespace ref

}  // namespace tandem::kernels
