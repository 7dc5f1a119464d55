#pragma once
// Private: the per-instruction-set kernel of kernels::attention_backward
// (attention_backward.cpp, body in attention_backward_body.inc) and the argument check
// it shares with ref::attention_backward.
#include <cstdint>

#include "tandem/kernels/backward.hpp"

namespace tandem::kernels::detail {

// Throws an Error naming the field at fault for what attention_backward does not take
// (softcap, pages) and fails a TD_CHECK for shapes or pointers that break its contract.
void check_attention_backward(const AttentionBackwardArgs& b);

// Per-thread buffers of one unit (AttnBwdKernels::unit), rows x = (head of the group,
// query of the tile), nx = (H/G) * tile_q at most: qc and oc [nx][d] (the unit's q and
// dout rows, copied together), p and ds [nx][tile_k] (probabilities, dP then dS), lse and
// delta [nx], row pointers q, dout, dq [nx] and k, dk, dv [tile_k].
struct AttnBwdScratch {
  float* qc;
  float* oc;
  float* p;
  float* ds;
  float* lse;
  float* delta;
  const float** q;
  const float** dout;
  float** dq;
  const float** k;
  float** dk;
  float** dv;
};

// One unit: KV head g and queries [i0, i0 + nq) (nq <= tile_q) with the H/G query heads
// of g, against every key of the call (tiles of tile_k keys, wholly masked ones skipped).
// Adds to dq (rows of the unit: no other unit writes them) and to dk, dv given as
// [n_kv] rows dstride floats apart (KV head g at g*d of a row): the caller's, or a
// thread's partial buffer. kt and vt: K and V of KV head g transposed per key tile,
// [tiles][d][tile_k] (keys past n_kv zero), made once per call (transpose_kv).
struct AttnBwdUnit {
  int g;
  int64_t i0;
  int nq;
  float* dk;
  float* dv;
  int64_t dstride;
  const float* kt;
  const float* vt;
};
using AttnBwdUnitFn = void (*)(const AttentionBackwardArgs& b, const AttnBwdUnit& u,
                               const AttnBwdScratch& sc);

struct AttnBwdKernels {
  AttnBwdUnitFn unit;
  int tile_q;  // queries per unit
  int tile_k;  // keys per tile
};

// The kernel of the instruction set in use (detail::isa()).
const AttnBwdKernels& attn_bwd_kernels();

}  // namespace tandem::kernels::detail
