#include "tandem/core/process_memory.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace tandem {

int64_t resident_bytes_of(const void* p, size_t n) {
  const long pg = ::sysconf(_SC_PAGESIZE);
  if (pg <= 0 || n == 0) return pg <= 0 ? -1 : 0;
  const uint64_t page = uint64_t(pg), a = reinterpret_cast<uintptr_t>(p);
  const uint64_t first = a / page, last = (a + n - 1) / page;
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::vector<uint64_t> entries(size_t(last - first + 1));
  const size_t want = entries.size() * sizeof(uint64_t);
  const ssize_t got = ::pread(fd, entries.data(), want, off_t(first * sizeof(uint64_t)));
  ::close(fd);
  if (got != ssize_t(want)) return -1;
  int64_t present = 0;
  for (uint64_t e : entries) present += int64_t((e >> 63) & 1);
  return present * int64_t(page);
}

ProcessMemory process_memory() {
  ProcessMemory m;
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return m;
  char line[256];
  const struct {
    const char* key;
    uint64_t ProcessMemory::*field;
  } keys[] = {{"VmHWM:", &ProcessMemory::peak_rss},
              {"VmRSS:", &ProcessMemory::rss},
              {"RssAnon:", &ProcessMemory::rss_anon},
              {"RssFile:", &ProcessMemory::rss_file}};
  int found = 0;
  while (std::fgets(line, sizeof line, f)) {
    for (const auto& k : keys) {
      const size_t n = std::strlen(k.key);
      if (std::strncmp(line, k.key, n) != 0) continue;
      char* end = nullptr;  // the kernel's own format: "<spaces><n> kB"
      const unsigned long long kib = std::strtoull(line + n, &end, 10);
      if (end != line + n) {
        m.*k.field = uint64_t(kib) * 1024;
        ++found;
      }
    }
  }
  std::fclose(f);
  m.known = found == 4;
  return m;
}

namespace {
std::atomic<uint64_t> g_baseline{0}, g_baseline_file{0};
}

void mark_baseline_rss() {
  const ProcessMemory m = process_memory();
  uint64_t expected = 0;
  if (g_baseline.compare_exchange_strong(expected, m.rss)) g_baseline_file.store(m.rss_file);
}

uint64_t baseline_rss() { return g_baseline.load(); }
uint64_t baseline_file_rss() { return g_baseline_file.load(); }

}  // namespace tandem
