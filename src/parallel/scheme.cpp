#include "tandem/parallel/scheme.hpp"

#include <charconv>

#include "tandem/core/error.hpp"
#include "tandem/parallel/ring_attention.hpp"

namespace tandem::parallel {

Scheme parse_scheme(std::string_view text, int ranks, std::string_view flag) {
  Scheme s;
  s.name = std::string(text);
  if (text == "ring") {
    s.kind = Scheme::Kind::Ring;
  } else if (text == "zigzag") {
    s.kind = Scheme::Kind::Ring;
    s.placement = Placement::Zigzag;
  } else if (text == "ulysses") {
    s.kind = Scheme::Kind::Ulysses;
  } else if (text == "pass-q") {
    s.kind = Scheme::Kind::PassQ;
  } else if (text.rfind("hybrid:", 0) == 0) {
    s.kind = Scheme::Kind::Hybrid;
    const std::string_view dims = text.substr(7);
    const auto x = dims.find('x');
    auto parse = [&](std::string_view v, int& out) {
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
      return ec == std::errc() && p == v.data() + v.size() && out > 0;
    };
    if (x == std::string_view::npos || !parse(dims.substr(0, x), s.ulysses) ||
        !parse(dims.substr(x + 1), s.ring))
      bad_input("{}: '{}' should be hybrid:UxR (e.g. hybrid:2x2)", flag, text);
    if (s.ulysses * s.ring != ranks)
      bad_input("{}: {} needs U x R = {} ranks, but {} are running", flag, text,
                s.ulysses * s.ring, ranks);
  } else {
    bad_input("{}: unknown scheme '{}' (ring, zigzag, ulysses, hybrid:UxR, pass-q)", flag, text);
  }
  return s;
}

std::unique_ptr<SequenceAttention> make_prefill_attention(const Scheme& s, AttnShape shape,
                                                          kernels::ThreadPool& pool,
                                                          comm::Communicator& comm) {
  switch (s.kind) {
    case Scheme::Kind::Ring: return std::make_unique<RingAttention>(shape, pool, comm);
    default: break;
  }
  bad_input("--sp {}: this scheme is not available yet", s.name);
}

}  // namespace tandem::parallel
