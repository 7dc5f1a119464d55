#include "kernels/isa.hpp"

#include <atomic>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace tandem::kernels::detail {
namespace {

std::atomic<const IsaKernels*> g_isa{nullptr};
std::atomic<bool> g_int8{true};

const IsaKernels* by_name(std::string_view name) {
  if (name == "avx512") return &isa_avx512();
  if (name == "avx2") return &isa_avx2();
  if (name == "generic") return &isa_generic();
  return nullptr;
}

#if defined(__x86_64__) || defined(__i386__)
struct CpuFeatures {
  bool avx2 = false;    // with FMA and F16C, and the OS saving the YMM state
  bool avx512 = false;  // AVX-512F, BW, VL and VNNI, and the OS saving the ZMM and mask state
};

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!(osxsave && avx && fma && f16c)) return f;
  unsigned xcr0_lo, xcr0_hi;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6u) != 0x6u) return f;  // XMM and YMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2 = b & (1u << 5);
  const bool f512 = b & (1u << 16), bw = b & (1u << 30), vl = b & (1u << 31),
             vnni = c & (1u << 11);
  f.avx512 = f.avx2 && f512 && bw && vl && vnni && (xcr0_lo & 0xe0u) == 0xe0u;  // opmask, ZMM
  return f;
}
#endif

const IsaKernels* pick() {
  if (const char* env = std::getenv("TANDEM_KERNELS_ISA"); env && isa_supported(env))
    return by_name(env);
  if (isa_supported("avx512")) return &isa_avx512();
  if (isa_supported("avx2")) return &isa_avx2();
  return &isa_generic();
}

}  // namespace

bool isa_supported(std::string_view name) {
  if (name == "generic") return true;
#if defined(__x86_64__) || defined(__i386__)
  static const CpuFeatures f = detect();
  if (name == "avx2") return f.avx2;
  if (name == "avx512") return f.avx512;
#endif
  return false;
}

const IsaKernels& isa() {
  const IsaKernels* k = g_isa.load(std::memory_order_acquire);
  if (!k) {
    k = pick();
    g_isa.store(k, std::memory_order_release);
  }
  return *k;
}

bool force_isa(std::string_view name) {
  if (!isa_supported(name)) return false;
  g_isa.store(by_name(name), std::memory_order_release);
  return true;
}

bool int8_activations() { return g_int8.load(std::memory_order_relaxed); }
void set_int8_activations(bool on) { g_int8.store(on, std::memory_order_relaxed); }

namespace {
std::atomic<bool> g_packed{true};
}
bool use_packed() { return g_packed.load(std::memory_order_relaxed); }
void set_use_packed(bool on) { g_packed.store(on, std::memory_order_relaxed); }

namespace {
std::atomic<bool> g_lanes{true};
}
bool lane_tiles() { return g_lanes.load(std::memory_order_relaxed); }
void set_lane_tiles(bool on) { g_lanes.store(on, std::memory_order_relaxed); }

}  // namespace tandem::kernels::detail
