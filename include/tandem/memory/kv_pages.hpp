#pragma once
// The page-table view of a paged KV cache: what the attention kernels read. It lives in
// memory (the module that owns the pages); kernels read it (kernels may use memory).
#include <cstddef>
#include <cstdint>

#include "tandem/core/dtype.hpp"

namespace tandem {

// Keys and values held in pages (a paged KV cache): page p holds keys
// [p * tokens, (p + 1) * tokens) of the key sequence (the last page may hold fewer).
struct KvPage {
  const void* k = nullptr;        // the page's first K row; rows row_bytes apart
  const void* v = nullptr;        // same for V
  const int32_t* pos = nullptr;   // the page's key positions
};
struct KvPages {
  int64_t tokens = 0;             // keys per page; 0: k, v and kv_pos are contiguous
  const KvPage* page = nullptr;   // [ceil(n_kv / tokens)]
  DType type = DType::F32;        // row storage: F32 (G*d floats) or Q8_0 (G*d/32 blocks)
  size_t row_bytes = 0;           // bytes between consecutive rows of a page
};

}  // namespace tandem
