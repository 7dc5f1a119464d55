#include "tandem/core/text_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/core/size.hpp"

namespace tandem {
namespace {

std::string who(std::string_view flag, const std::string& path) {
  return flag.empty() ? path : fmt::format("{} {}", flag, path);
}

[[noreturn]] void too_large(std::string_view flag, const std::string& path, std::string_view size,
                            uint64_t limit) {
  bad_input("{}: the limit is {} bytes ({}) and the file is {}", who(flag, path), limit,
            format_size(double(limit)), size);
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// read(2) until `want` bytes or end of file; returns the bytes read.
size_t read_some(int fd, char* out, size_t want, std::string_view flag, const std::string& path) {
  size_t got = 0;
  while (got < want) {
    const ssize_t n = ::read(fd, out + got, want - got);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      bad_input("{}: cannot read: {}", who(flag, path), std::strerror(errno));
    }
    got += size_t(n);
  }
  return got;
}

}  // namespace

std::string read_file_bounded(const std::string& path, std::string_view flag, uint64_t limit) {
  Fd f;
  do {
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (f.fd < 0 && errno == EINTR);
  if (f.fd < 0) bad_input("{}: cannot open: {}", who(flag, path), std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) bad_input("{}: cannot stat: {}", who(flag, path), std::strerror(errno));
  if (S_ISDIR(st.st_mode)) bad_input("{}: is a directory, not a file", who(flag, path));

  // A regular file says its size: refuse it before reading when it is over the limit,
  // and read it in one piece when not.
  std::string text;
  if (S_ISREG(st.st_mode)) {
    const uint64_t size = uint64_t(st.st_size);
    if (size > limit) too_large(flag, path, fmt::format("{} bytes", size), limit);
    text.resize(size_t(size));
    text.resize(read_some(f.fd, text.data(), text.size(), flag, path));
  }
  // Whatever is left (all of a pipe or a device, whose size means nothing; the rest of a
  // regular file that grew, or of one that reports no size, as /proc files do): pieces of
  // at most 1 MiB, at most limit + 1 bytes in all.
  constexpr uint64_t kPiece = uint64_t{1} << 20;
  std::vector<std::unique_ptr<char[]>> pieces;
  std::vector<size_t> lengths;
  uint64_t total = text.size();
  const uint64_t cap = limit == UINT64_MAX ? limit : limit + 1;
  for (;;) {
    const size_t want = size_t(std::min(kPiece, cap - total));
    std::unique_ptr<char[]> piece(new char[want]);
    const size_t got = read_some(f.fd, piece.get(), want, flag, path);
    total += got;
    if (total > limit) too_large(flag, path, "longer than that (reading stopped there)", limit);
    if (got > 0) {
      pieces.push_back(std::move(piece));
      lengths.push_back(got);
    }
    if (got < want) break;  // end of file
  }
  text.reserve(size_t(total));
  for (size_t i = 0; i < pieces.size(); ++i) {
    text.append(pieces[i].get(), lengths[i]);
    pieces[i].reset();
  }
  return text;
}

}  // namespace tandem
