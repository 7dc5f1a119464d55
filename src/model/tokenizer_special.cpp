// Tokens matched in raw text before encoding (user-defined tokens; control tokens when
// asked): the split of the input into text and token fragments.
#include <algorithm>
#include <bitset>

#include "model/tokenizer_vocab.hpp"
#include "model/tokenizer_work.hpp"

namespace tandem::detail {

std::vector<int32_t> matchable_tokens(const Vocab& v) {
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < v.size(); ++i) {
    const TokenType t = v.types[size_t(i)];
    if ((t == TokenType::UserDefined || t == TokenType::Control || t == TokenType::Unknown) &&
        !v.tokens[size_t(i)].empty())
      ids.push_back(i);
  }
  std::stable_sort(ids.begin(), ids.end(), [&v](int32_t a, int32_t b) {
    return v.tokens[size_t(a)].size() > v.tokens[size_t(b)].size();
  });
  return ids;
}

void split_on_tokens(std::string_view text, const Vocab& v, const std::vector<int32_t>& matchable,
                     bool parse_special, std::vector<Fragment>& out) {
  out.clear();
  if (text.empty()) return;
  out.push_back({0, text.size(), -1});
  // A token whose first byte is absent from the text cannot occur: skipped without a
  // search, so a vocabulary of many such tokens costs one pass per token that might.
  std::bitset<256> present;
  for (unsigned char c : text) present.set(c);
  std::vector<Fragment> next;
  for (int32_t id : matchable) {
    const TokenType t = v.types[size_t(id)];
    if (!parse_special && t != TokenType::UserDefined) continue;
    const std::string& tok = v.tokens[size_t(id)];
    if (!present.test(static_cast<unsigned char>(tok[0]))) continue;
    next.clear();
    bool found = false;
    for (const Fragment& f : out) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      // Counted as one lookup of the fragment's bytes (what the searches scan).
      ++tokenizer_work.lookups;
      tokenizer_work.bytes_looked_up += f.size;
      size_t pos = f.begin;
      const size_t end = f.begin + f.size;
      while (pos < end) {
        const size_t at = text.substr(0, end).find(tok, pos);
        if (at == std::string_view::npos) break;
        if (at > pos) next.push_back({pos, at - pos, -1});
        next.push_back({at, tok.size(), id});
        pos = at + tok.size();
        found = true;
      }
      if (pos < end) next.push_back({pos, end - pos, -1});
    }
    if (found) out.swap(next);
  }
}

}  // namespace tandem::detail
