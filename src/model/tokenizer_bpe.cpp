// Byte-level BPE encoding: pre-tokenize, map bytes to tokens, then repeatedly merge the
// adjacent pair with the lowest merge rank inside each pre-token.
#include <algorithm>
#include <string>

#include "model/tokenizer_vocab.hpp"
#include "model/tokenizer_work.hpp"

namespace tandem::detail {

namespace {

struct Candidate {
  int32_t rank;
  int32_t left;  // symbol positions
  int32_t right;
  int32_t left_id;  // token ids when the candidate was made (detects stale entries)
  int32_t right_id;
  int32_t result;
};

// Max-heap order on "worse": the lowest rank, then the leftmost pair, comes first.
struct CandidateWorse {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.left > b.left;
  }
};

}  // namespace

// Buffers reused across the pre-tokens of one encode call.
struct BpeEncoder::Scratch {
  std::vector<int32_t> id, prev, next;
  std::vector<Candidate> heap;
  std::string mapped;
};

BpeEncoder::BpeEncoder(const Vocab& vocab, const std::vector<std::string_view>& merges,
                       std::unique_ptr<PreTokenizer> pre)
    : vocab_(vocab), pre_(std::move(pre)) {
  const auto& map = byte_to_unicode();
  for (int b = 0; b < 256; ++b) byte_ids_[b] = vocab.find(map[b]);

  merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string_view m = merges[rank];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string_view::npos) continue;
    const std::string_view a = m.substr(0, sp), b = m.substr(sp + 1);
    const int32_t ia = vocab.find(a), ib = vocab.find(b);
    if (ia < 0 || ib < 0) continue;
    joined.assign(a);
    joined += b;
    const int32_t result = vocab.find(joined);
    if (result < 0) continue;
    merges_.try_emplace(key(ia, ib), Merge{static_cast<int32_t>(rank), result});
  }
}

BpeEncoder::~BpeEncoder() = default;

void BpeEncoder::encode(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<Span> spans;
  pre_->split(text, spans);
  Scratch scratch;
  for (const Span& sp : spans) encode_piece(text.substr(sp.begin, sp.size), out, scratch);
}

void BpeEncoder::encode_piece(std::string_view piece, std::vector<int32_t>& out,
                              Scratch& sc) const {
  const auto& map = byte_to_unicode();
  const auto emit_byte = [&](unsigned char c) {
    const int32_t id = byte_ids_[c];
    if (id >= 0)
      out.push_back(id);
    else if (vocab_.unk >= 0)
      out.push_back(vocab_.unk);
  };

  TokenizerWork& work = tokenizer_work;
  if (pre_->ignore_merges()) {
    sc.mapped.clear();
    for (char c : piece) sc.mapped += map[static_cast<unsigned char>(c)];
    ++work.lookups;
    work.bytes_looked_up += sc.mapped.size();
    const int32_t id = vocab_.find(sc.mapped);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const auto n = static_cast<int32_t>(piece.size());
  if (n == 1) {
    emit_byte(static_cast<unsigned char>(piece[0]));
    return;
  }

  // One symbol per byte (each byte maps to one character of the vocabulary).
  sc.id.resize(n);
  sc.prev.resize(n);
  sc.next.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    sc.id[i] = byte_ids_[static_cast<unsigned char>(piece[i])];
    sc.prev[i] = i - 1;
    sc.next[i] = i + 1 < n ? i + 1 : -1;
  }

  auto& heap = sc.heap;
  heap.clear();
  uint64_t lookups = 0, pops = 0;
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t a = sc.id[left], b = sc.id[right];
    if (a < 0 || b < 0) return;
    ++lookups;
    const auto it = merges_.find(key(a, b));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, right, a, b, it->second.result});
    std::push_heap(heap.begin(), heap.end(), CandidateWorse{});
  };
  for (int32_t i = 1; i < n; ++i) try_add(i - 1, i);

  while (!heap.empty()) {
    ++pops;
    std::pop_heap(heap.begin(), heap.end(), CandidateWorse{});
    const Candidate c = heap.back();
    heap.pop_back();
    // Stale when either side merged since: a merged symbol's id changes (tokens only
    // grow), and a symbol absorbed by its left neighbour is unlinked.
    if (sc.next[c.left] != c.right || sc.id[c.left] != c.left_id || sc.id[c.right] != c.right_id)
      continue;
    sc.id[c.left] = c.result;
    sc.id[c.right] = -2;
    const int32_t after = sc.next[c.right];
    sc.next[c.left] = after;
    sc.next[c.right] = -1;
    if (after >= 0) sc.prev[after] = c.left;
    try_add(sc.prev[c.left], c.left);
    try_add(c.left, after);
  }
  work.lookups += lookups;
  work.queue_pops += pops;

  for (int32_t i = 0; i >= 0; i = sc.next[i]) {
    if (sc.id[i] >= 0)
      out.push_back(sc.id[i]);
    else
      emit_byte(static_cast<unsigned char>(piece[i]));  // unmerged byte missing from the vocab
  }
}

}  // namespace tandem::detail
