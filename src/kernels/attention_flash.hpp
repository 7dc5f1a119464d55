#pragma once
// The flash-attention kernels of kernels::attention (attention.cpp), compiled per
// instruction set in attention_flash.cpp: one query against a range of keys (decode and
// key splits) and tiles of tile_q queries against every key (prefill). Both honour the
// whole mask of AttentionArgs (causal, sliding window) and its score soft-capping.
#include "kernels/isa.hpp"

namespace tandem::kernels::detail {

struct FlashKernels {
  AttnFn unit;
  AttnTileFn tile;
  int tile_q;  // queries per tile
};

// The kernels of the instruction set in use (detail::isa(): TANDEM_KERNELS_ISA and the
// tests' force_isa apply).
const FlashKernels& flash_kernels();

}  // namespace tandem::kernels::detail
