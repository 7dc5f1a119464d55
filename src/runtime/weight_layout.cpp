#include "tandem/runtime/weight_layout.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/kernels/ops.hpp"

namespace tandem {

namespace {

// The f32 vectors the forward pass reads (norms, biases), with their lengths.
std::vector<std::pair<const float**, int64_t>> model_vectors(Model& model) {
  const HParams& h = model.hparams();
  std::vector<std::pair<const float**, int64_t>> v{{&model.output_norm, h.n_embd},
                                                   {&model.rope_freqs, h.n_rot / 2}};
  for (LayerWeights& l : model.layers) {
    for (const float** n : {&l.attn_norm, &l.ffn_norm, &l.post_attn_norm, &l.post_ffn_norm})
      v.push_back({n, h.n_embd});
    for (const float** n : {&l.q_norm, &l.k_norm}) v.push_back({n, h.head_dim});
    for (const float** b : {&l.bq}) v.push_back({b, h.q_dim()});
    for (const float** b : {&l.bk, &l.bv}) v.push_back({b, h.kv_dim()});
  }
  std::erase_if(v, [](const auto& e) { return *e.first == nullptr; });
  return v;
}

bool repack_enabled() {
  const char* e = std::getenv("TANDEM_NO_REPACK");
  return !(e && *e && std::strcmp(e, "0") != 0);
}

size_t aligned64(size_t n) { return (n + 63) / 64 * 64; }

// Bytes of [p, p + n) resident in memory (mincore; p page-aligned); n where unknown.
size_t resident_bytes(const void* p, size_t n) {
  const long pg = ::sysconf(_SC_PAGESIZE);
  if (pg <= 0) return n;
  std::vector<unsigned char> v((n + size_t(pg) - 1) / size_t(pg));
  if (::mincore(const_cast<void*>(p), n, v.data()) != 0) return n;
  size_t pages = 0;
  for (unsigned char c : v) pages += c & 1;
  return pages * size_t(pg);
}

}  // namespace

void lay_out_weights(Model& model) {
  if (!repack_enabled()) return;
  // Copies a range of the mapping a slice at a time, dropping each slice once copied, so
  // the copy never holds much of the original beside it.
  auto copy_dropping = [&model](uint8_t* dst, const void* src, size_t n) {
    constexpr size_t kSlice = size_t(4) << 20;
    const auto* from = static_cast<const uint8_t*>(src);
    for (size_t off = 0; off < n; off += kSlice) {
      const size_t len = std::min(kSlice, n - off);
      std::memcpy(dst + off, from + off, len);
      model.drop_file_range(from + off, len);
    }
  };
  // Everything the forward pass reads but the embedding gets a place in one arena: every
  // matrix (packed for the kernels in use where they have a layout of their own, else as
  // stored) and the norm and bias vectors.
  struct Job {
    size_t bytes = 0;
    std::function<void(uint8_t*)> copy;
  };
  std::vector<Job> jobs;
  for (MatrixView* w : model.matrices()) {
    const size_t packed = kernels::packed_size(*w);
    if (packed > 0) {
      jobs.push_back({packed, [&model, w, packed](uint8_t* p) {
                        w->packed_layout = kernels::pack_weight(*w, p);
                        w->packed = p;
                        w->packed_bytes = packed;
                        model.drop_file_range(w->data, w->nbytes());
                      }});
    } else if (w->nbytes() > 0) {
      jobs.push_back({w->nbytes(), [w, &copy_dropping](uint8_t* p) {
                        copy_dropping(p, w->data, w->nbytes());  // same layout, better pages
                        w->data = p;
                      }});
    }
  }
  // The embedding stays in the mapping (get_rows reads only the rows of the prompt's
  // tokens, and the pages are the page cache's: shared by every rank of a node and, under
  // a memory cgroup, charged to whoever read the file first). A tied output keeps it too.
  const MatrixView embd = model.tok_embd;
  for (const auto& [ptr, n] : model_vectors(model))
    jobs.push_back({size_t(n) * sizeof(float), [ptr, n](uint8_t* p) {
                      std::memcpy(p, *ptr, size_t(n) * sizeof(float));
                      *ptr = reinterpret_cast<const float*>(p);
                    }});
  if (jobs.empty()) return;
  // Largest first, each at the arena's next place: while a job runs the process holds the
  // arena written so far plus (part of) that job's original, so the large originals are
  // read while little of the arena is written.
  std::stable_sort(jobs.begin(), jobs.end(),
                   [](const Job& a, const Job& b) { return a.bytes > b.bytes; });
  // One arena in 2 MiB huge pages where the kernel gives them (fewer TLB misses on the
  // decode stream; F32 decode 3-6% faster than without the copy, measured with tandem
  // bench -p 0 -n 128 against TANDEM_NO_REPACK=1 on a quiet machine).
  constexpr size_t kHuge = size_t(2) << 20;
  size_t total = 0;
  for (const Job& j : jobs) total += aligned64(j.bytes);
  total = (total + kHuge - 1) / kHuge * kHuge;
  auto* arena = static_cast<uint8_t*>(std::aligned_alloc(kHuge, total));
  if (!arena) fail(ErrorKind::Resource, "out of memory copying {} bytes of weights", total);
  ::madvise(arena, total, MADV_HUGEPAGE);  // advice only: 4 KiB pages where refused
  size_t used = 0;
  for (const Job& j : jobs) {
    j.copy(arena + used);
    used += aligned64(j.bytes);
  }
  size_t matrix_bytes = 0, other_bytes = 0;
  for (const MatrixView* w : model.matrices())
    matrix_bytes += w->packed ? w->packed_bytes : w->nbytes();
  for (const Job& j : jobs) other_bytes += j.bytes;
  other_bytes -= std::min(other_bytes, matrix_bytes);
  // Nothing but the embedding's rows is read from the mapping now: drop all the rest.
  // Dropping only the matrices' ranges left pages of them resident: the page cache holds
  // the file in large folios (2 and 4 MiB runs, seen in /proc/PID/pagemap), and a read of
  // a norm vector between two matrices mapped its whole folio again (about 25 MiB on
  // small-q8_0). An embedding row next to either end of the embedding can still map the
  // folio it shares with the neighbouring tensor. The reference kernels read packed
  // matrices' originals from the mapping (faulted in again).
  model.drop_mapping_except(embd.data, embd.nbytes());
  // What the arena holds is its resident pages: a huge page is resident whole, the last
  // one past the copies too.
  model.adopt_weight_copies(arena, matrix_bytes, other_bytes, resident_bytes(arena, total));
}

std::unique_ptr<Model> load_model(const std::string& path) {
  auto m = Model::load(path);
  lay_out_weights(*m);
  return m;
}

}  // namespace tandem
