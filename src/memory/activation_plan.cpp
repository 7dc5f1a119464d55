#include "tandem/memory/activation_plan.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <limits>
#include <map>
#include <new>
#include <numeric>

#include "tandem/core/error.hpp"

namespace tandem {

namespace {

constexpr size_t kNone = std::numeric_limits<size_t>::max();

// Free ranges of an unbounded arena, as begin -> end; the last range always runs to
// kNone (the untouched space past the high-water mark).
class FreeList {
 public:
  FreeList() { ranges_[0] = kNone; }

  // Best fit: the smallest range that holds `need` bytes, lowest offset on a tie. The
  // unbounded last range is the largest, so it is used only when no other range fits.
  size_t take(size_t need) {
    auto best = ranges_.end();
    size_t best_size = kNone;
    for (auto it = ranges_.begin(); it != ranges_.end(); ++it) {
      const size_t sz = it->second - it->first;
      if (sz >= need && (best == ranges_.end() || sz < best_size)) {
        best = it;
        best_size = sz;
      }
    }
    TD_CHECK(best != ranges_.end());
    const size_t begin = best->first, end = best->second;
    ranges_.erase(best);
    if (begin + need < end) ranges_[begin + need] = end;
    peak_ = std::max(peak_, begin + need);
    return begin;
  }

  // Returns [begin, end) and merges it with the ranges it touches.
  void give(size_t begin, size_t end) {
    if (begin == end) return;
    auto next = ranges_.lower_bound(begin);
    TD_CHECK(next == ranges_.end() || next->first >= end);
    if (next != ranges_.end() && next->first == end) {
      end = next->second;
      next = ranges_.erase(next);
    }
    if (next != ranges_.begin()) {
      auto prev = std::prev(next);
      TD_CHECK(prev->second <= begin);
      if (prev->second == begin) {
        prev->second = end;
        return;
      }
    }
    ranges_[begin] = end;
  }

  size_t peak() const { return peak_; }

 private:
  std::map<size_t, size_t> ranges_;
  size_t peak_ = 0;
};

size_t round_up(size_t x, size_t a, size_t i) {
  if (x > kNone - a) bad_input("activation plan: buffer {} has an impossible size {}", i, x);
  return (x + a - 1) / a * a;
}

// Max over steps of the aligned bytes live at once; an in-place claimant is counted
// from the step after its birth (at its birth step it lies inside its input's range).
size_t live_bytes_max(std::span<const BufferSpec> specs, const std::vector<size_t>& size,
                      const std::vector<int32_t>& in_place) {
  const size_t n = specs.size();
  std::vector<size_t> births(n), deaths(n);
  std::iota(births.begin(), births.end(), size_t(0));
  std::iota(deaths.begin(), deaths.end(), size_t(0));
  std::sort(births.begin(), births.end(),
            [&](size_t a, size_t b) { return specs[a].first_use < specs[b].first_use; });
  std::sort(deaths.begin(), deaths.end(),
            [&](size_t a, size_t b) { return specs[a].last_use < specs[b].last_use; });
  size_t live = 0, best = 0, d = 0, pending = 0;  // pending: claimants born this step
  for (size_t b = 0; b < n;) {
    const int32_t step = specs[births[b]].first_use;
    live += pending;
    pending = 0;
    for (; d < n && specs[deaths[d]].last_use < step; ++d) live -= size[deaths[d]];
    for (; b < n && specs[births[b]].first_use == step; ++b) {
      const size_t i = births[b];
      if (in_place[i] >= 0)
        pending += size[i];
      else
        live += size[i];
    }
    best = std::max(best, live);
  }
  return best;
}

}  // namespace

ActivationPlan plan_activations(std::span<const BufferSpec> specs, size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    bad_input("activation plan: alignment {} is not a power of two", alignment);
  const size_t n = specs.size();
  if (n > size_t(std::numeric_limits<int32_t>::max()))
    bad_input("activation plan: too many buffers ({})", n);
  ActivationPlan plan;
  plan.alignment = alignment;
  plan.offsets.assign(n, 0);
  plan.in_place_of.assign(n, -1);

  std::vector<size_t> size(n);
  for (size_t i = 0; i < n; ++i) {
    const BufferSpec& b = specs[i];
    if (b.last_use < b.first_use)
      bad_input("activation plan: buffer {} has last_use {} < first_use {}", i, b.last_use,
                b.first_use);
    if (b.in_place_of != -1 && (b.in_place_of < 0 || size_t(b.in_place_of) >= n ||
                                size_t(b.in_place_of) == i))
      bad_input("activation plan: buffer {} has in_place_of {}, not another buffer (0..{})", i,
                b.in_place_of, n == 0 ? 0 : n - 1);
    size[i] = round_up(b.bytes, alignment, i);
    if (plan.unplanned_bytes > kNone - size[i])
      bad_input("activation plan: the buffers' sizes overflow");
    plan.unplanned_bytes += size[i];
  }

  // Birth order: by step; within a step in-place candidates first (index order), then by
  // size descending, then index.
  auto wants_in_place = [&](size_t i) { return specs[i].in_place_of >= 0 && size[i] > 0; };
  std::vector<size_t> births(n), deaths(n);
  std::iota(births.begin(), births.end(), size_t(0));
  std::iota(deaths.begin(), deaths.end(), size_t(0));
  std::sort(births.begin(), births.end(), [&](size_t a, size_t b) {
    if (specs[a].first_use != specs[b].first_use) return specs[a].first_use < specs[b].first_use;
    if (wants_in_place(a) != wants_in_place(b)) return wants_in_place(a);
    if (!wants_in_place(a) && size[a] != size[b]) return size[a] > size[b];
    return a < b;
  });
  std::stable_sort(deaths.begin(), deaths.end(),
                   [&](size_t a, size_t b) { return specs[a].last_use < specs[b].last_use; });

  // held_from[i]: the part of i's range it still owns ([offset + held, offset + size) is freed
  // at its death); a claimant takes the first size[claimant] bytes.
  std::vector<size_t> held_from(n, 0);
  std::vector<bool> claimed(n, false), placed(n, false);
  FreeList free;
  size_t d = 0;
  for (size_t b = 0; b < n;) {
    const int32_t step = specs[births[b]].first_use;
    for (; d < n && specs[deaths[d]].last_use < step; ++d) {
      const size_t i = deaths[d];
      if (!placed[i] || size[i] == 0) continue;
      free.give(plan.offsets[i] + held_from[i], plan.offsets[i] + size[i]);
    }
    for (; b < n && specs[births[b]].first_use == step; ++b) {
      const size_t i = births[b];
      placed[i] = true;
      if (size[i] == 0) continue;
      if (wants_in_place(i)) {
        const auto x = size_t(specs[i].in_place_of);
        const bool legal = placed[x] && !claimed[x] && specs[x].last_use == step &&
                           specs[x].first_use < step && size[i] <= size[x] - held_from[x];
        if (legal) {
          claimed[x] = true;
          plan.offsets[i] = plan.offsets[x] + held_from[x];
          held_from[x] += size[i];
          plan.in_place_of[i] = int32_t(x);
          continue;
        }
      }
      plan.offsets[i] = free.take(size[i]);
    }
  }
  plan.arena_bytes = free.peak();
  plan.live_bytes_max = live_bytes_max(specs, size, plan.in_place_of);
  return plan;
}

void ActivationArena::Free::operator()(std::byte* p) const {
  ::operator delete[](p, std::align_val_t(alignment));
}

namespace {
// From this size on the arena sits on transparent huge pages: the first forward step
// writes every buffer of it, and with 4 KiB pages each first write is a page fault.
constexpr size_t kHugePage = size_t(2) << 20;
}  // namespace

ActivationArena::ActivationArena(const ActivationPlan& plan)
    : mem_(nullptr, Free{plan.arena_bytes >= kHugePage / 2 ? std::max(plan.alignment, kHugePage)
                                                            : plan.alignment}),
      bytes_(plan.arena_bytes) {
  const size_t align = mem_.get_deleter().alignment;
  try {
    mem_.reset(static_cast<std::byte*>(
        ::operator new[](std::max<size_t>(bytes_, 1), std::align_val_t(align))));
  } catch (const std::bad_alloc&) {
    fail(ErrorKind::Resource, "cannot allocate the activation arena: {} MiB needed",
         bytes_ >> 20);
  }
  // Advice only: 4 KiB pages where refused.
  if (align >= kHugePage)
    ::madvise(mem_.get(), (bytes_ + kHugePage - 1) / kHugePage * kHugePage, MADV_HUGEPAGE);
}

}  // namespace tandem
