#include "tandem/runtime/weight_layout.hpp"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem {

void lay_out_weights(Model& model) {
  if (const char* e = std::getenv("TANDEM_NO_REPACK"); e && *e && std::strcmp(e, "0") != 0)
    return;
  const std::vector<MatrixView*> mats = model.matrices();
  // One arena for every matrix, in 2 MiB huge pages where the kernel gives them (fewer TLB
  // misses on the decode stream; F32 decode 3-6% faster than without the copy, measured
  // with tandem bench -p 0 -n 128 against TANDEM_NO_REPACK=1 on a quiet machine).
  constexpr size_t kHuge = size_t(2) << 20;
  size_t total = 0;
  auto arena_size = [](const MatrixView& w) {
    const size_t p = kernels::packed_size(w);
    return p ? p : w.nbytes();
  };
  for (const MatrixView* w : mats) total += (arena_size(*w) + 63) / 64 * 64;
  if (total == 0) return;
  total = (total + kHuge - 1) / kHuge * kHuge;
  auto* arena = static_cast<uint8_t*>(std::aligned_alloc(kHuge, total));
  if (!arena) fail(ErrorKind::Resource, "out of memory repacking {} bytes of weights", total);
  ::madvise(arena, total, MADV_HUGEPAGE);  // advice only: 4 KiB pages where refused
  size_t used = 0, copied = 0;
  std::vector<std::pair<const void*, size_t>> originals;
  for (MatrixView* w : mats) {
    const size_t n = arena_size(*w);
    if (n == 0) continue;
    uint8_t* p = arena + used;
    used += (n + 63) / 64 * 64;
    const void* original = w->data;
    if (kernels::packed_size(*w) > 0) {
      w->packed_layout = kernels::pack_weight(*w, p);
      w->packed = p;
      w->packed_bytes = n;
    } else {
      std::memcpy(p, w->data, n);  // same layout, better pages
      w->data = p;
    }
    copied += n;
    // The original pages are read only by the reference kernels and get_rows (a tied
    // embedding) from now on: drop them at once, so no matrix is resident twice and the
    // process never holds more than one matrix beyond the copies (they come back from
    // the file if read).
    model.drop_file_range(original, w->nbytes());
    originals.emplace_back(original, w->nbytes());
  }
  // Reading a matrix faults in the file pages after it too (the kernel reads ahead), and
  // matrices are not copied in file order: pages of a matrix dropped earlier may be back.
  // Drop every original range once more. Measured on small-q8_0 (/proc/PID/pagemap during
  // a prefill): 14 MiB of dropped matrix pages resident with one pass, 8 MiB with two; the
  // rest is not explained yet.
  for (const auto& [p, n] : originals) model.drop_file_range(p, n, /*count=*/false);
  model.adopt_weight_copies(arena, copied);
}

std::unique_ptr<Model> load_model(const std::string& path) {
  auto m = Model::load(path);
  lay_out_weights(*m);
  return m;
}

}  // namespace tandem
