// SentencePiece-style encoding: greedy merging of adjacent symbols by highest score.
#include <algorithm>
#include <string>

#include "model/tokenizer_vocab.hpp"
#include "model/tokenizer_work.hpp"

namespace tandem::detail {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581

struct Symbol {
  size_t begin;
  size_t n;  // 0 once merged into its left neighbour
  int32_t prev;
  int32_t next;
};

struct Bigram {
  float score;
  int32_t left;
  int32_t right;
  size_t size;
};

// Max-heap order: higher score first, then the leftmost pair.
struct BigramLess {
  bool operator()(const Bigram& a, const Bigram& b) const {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  }
};

}  // namespace

SpmEncoder::SpmEncoder(const Vocab& vocab, bool add_space_prefix)
    : vocab_(vocab), add_space_prefix_(add_space_prefix) {
  for (int b = 0; b < 256; ++b) {
    char name[8];
    static constexpr char kHex[] = "0123456789ABCDEF";
    name[0] = '<', name[1] = '0', name[2] = 'x', name[3] = kHex[b >> 4], name[4] = kHex[b & 15],
    name[5] = '>';
    const int32_t id = vocab.find(std::string_view(name, 6));
    byte_ids_[b] = id;
  }
}

int32_t SpmEncoder::mergeable(std::string_view text) const {
  const int32_t id = vocab_.find(text);
  if (id < 0) return -1;
  switch (vocab_.types[id]) {
    case TokenType::Control:
    case TokenType::Byte:
    case TokenType::Unknown:
    case TokenType::Unused:
      return -1;
    default:
      return id;
  }
}

void SpmEncoder::encode(std::string_view text, std::vector<int32_t>& out,
                        bool space_prefix) const {
  if (text.empty()) return;

  // Escape spaces (and add the space prefix).
  std::string s;
  s.reserve(text.size() + 8 + 2 * static_cast<size_t>(std::count(text.begin(), text.end(), ' ')));
  if (space_prefix) s += kSpace;
  for (char c : text) {
    if (c == ' ')
      s += kSpace;
    else
      s += c;
  }

  // One symbol per UTF-8 character (an invalid byte is a symbol of its own).
  std::vector<Symbol> sym;
  sym.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    const size_t len = utf8_next(s, i, cp);
    const auto idx = static_cast<int32_t>(sym.size());
    sym.push_back({i, len, idx - 1, idx + 1});
    i += len;
  }
  sym.back().next = -1;

  std::vector<Bigram> heap;
  heap.reserve(sym.size());
  uint64_t lookups = 0, bytes = 0, pops = 0;
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const size_t size = sym[left].n + sym[right].n;
    ++lookups;
    bytes += size;
    const int32_t id = mergeable(std::string_view(s).substr(sym[left].begin, size));
    if (id < 0) return;
    heap.push_back({vocab_.scores[id], left, right, size});
    std::push_heap(heap.begin(), heap.end(), BigramLess{});
  };

  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    ++pops;
    std::pop_heap(heap.begin(), heap.end(), BigramLess{});
    const Bigram bg = heap.back();
    heap.pop_back();
    Symbol& l = sym[bg.left];
    Symbol& r = sym[bg.right];
    if (l.n == 0 || r.n == 0 || l.next != bg.right || l.n + r.n != bg.size) continue;  // stale
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = bg.left;
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }

  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    const std::string_view piece = std::string_view(s).substr(sym[i].begin, sym[i].n);
    ++lookups;
    bytes += piece.size();
    const int32_t id = mergeable(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // Not in the vocabulary: one byte token per byte (or <unk> without byte tokens).
    const bool all_bytes = std::all_of(piece.begin(), piece.end(), [&](char c) {
      return byte_ids_[static_cast<unsigned char>(c)] >= 0;
    });
    if (all_bytes) {
      for (char c : piece) out.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    } else if (vocab_.unk >= 0) {
      out.push_back(vocab_.unk);
    }
  }
  TokenizerWork& work = tokenizer_work;
  work.lookups += lookups;
  work.bytes_looked_up += bytes;
  work.queue_pops += pops;
}

}  // namespace tandem::detail
