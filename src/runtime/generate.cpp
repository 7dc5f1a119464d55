#include "tandem/runtime/generate.hpp"

#include <numeric>

#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"

namespace tandem {

GenerateStats generate(Engine& engine, KVCache& cache, std::span<const int32_t> prompt,
                       const GenerateParams& params, const std::function<void(int32_t)>& on_token,
                       std::vector<int32_t>* out) {
  const Model& model = engine.model();
  const int64_t V = model.hparams().n_vocab;
  if (prompt.empty()) bad_input("the prompt is empty (no tokens)");
  if (cache.size() != 0) fail(ErrorKind::Internal, "generate needs an empty KV cache");
  if (int64_t(prompt.size()) + params.n_predict > cache.capacity())
    fail(ErrorKind::Resource, "prompt ({}) + n_predict ({}) exceed the KV cache capacity {}",
         prompt.size(), params.n_predict, cache.capacity());

  GenerateStats st;
  st.n_prompt = int64_t(prompt.size());
  std::vector<float> logits(static_cast<size_t>(V));
  std::vector<int32_t> pos(prompt.size());
  std::iota(pos.begin(), pos.end(), 0);

  const Stopwatch total;
  const Stopwatch sw;
  engine.forward(cache, prompt, pos, 1, logits.data());
  st.prompt_seconds = sw.seconds();
  std::vector<int32_t> seq(prompt.begin(), prompt.end());  // for recomputation
  decode_loop(engine, cache, logits, int32_t(prompt.size()), params, total, st, on_token, out,
              params.kv_cache ? nullptr : &seq);
  return st;
}

void decode_loop(Engine& engine, KVCache& cache, std::vector<float>& logits, int32_t start_pos,
                 const GenerateParams& params, const Stopwatch& since, GenerateStats& st,
                 const std::function<void(int32_t)>& on_token, std::vector<int32_t>* out,
                 std::vector<int32_t>* recompute) {
  std::vector<int32_t> all_pos;
  Sampler sampler(params.sampler);
  const Tokenizer* tok = engine.model().tokenizer();
  int32_t next = sampler.sample(logits);
  int32_t p = start_pos;
  Stopwatch sw;
  for (int64_t i = 0; i < params.n_predict; ++i) {
    if (i == 0) st.ttft_seconds = since.seconds();
    ++st.n_generated;
    if (out) out->push_back(next);
    if (on_token) on_token(next);
    if (params.stop_at_eog && tok && tok->is_eog(next)) break;
    if (i + 1 == params.n_predict) break;
    // A model file replaced, truncated or removed under us: stop with a clear error
    // (the mapping still holds the old bytes, so nothing read so far was wrong).
    engine.model().file().check_unchanged();
    sw.reset();
    if (recompute) {
      // No KV cache: run the whole sequence again for every new token.
      recompute->push_back(next);
      all_pos.resize(recompute->size());
      std::iota(all_pos.begin(), all_pos.end(), 0);
      cache.truncate(0);
      engine.forward(cache, *recompute, all_pos, 1, logits.data());
    } else {
      engine.forward(cache, std::span<const int32_t>(&next, 1), std::span<const int32_t>(&p, 1), 1,
                     logits.data());
    }
    const double step = sw.seconds();
    st.decode_seconds += step;
    st.step_seconds.push_back(step);
    ++st.n_decode_steps;
    ++p;
    next = sampler.sample(logits);
  }
}

ParallelResult generate_parallel(Engine& engine, std::span<const int32_t> prompt,
                                 const GenerateParams& params, int n_seq,
                                 const KVCacheOptions& kv,
                                 const std::function<void(int, int32_t)>& on_token) {
  if (prompt.empty()) bad_input("the prompt is empty (no tokens)");
  if (n_seq < 1) bad_input("--parallel: need at least 1 sequence (got {})", n_seq);
  if (!params.kv_cache) bad_input("--parallel shares the prompt's KV cache pages; not with --no-kv-cache");
  if (kv.page_tokens <= 0 && n_seq > 1)
    bad_input("--parallel {}: sequences share pages of the KV cache; give --kv-page N > 0", n_seq);
  const int64_t V = engine.model().hparams().n_vocab;
  const int64_t n_prompt = int64_t(prompt.size());
  const int64_t capacity = n_prompt + params.n_predict;
  KVCacheOptions pool = kv;
  // Every sequence's pages, and one spare page each for the copy of a shared partial page.
  pool.pool_tokens = n_seq * (capacity + std::max<int64_t>(kv.page_tokens, 0));
  ParallelResult r;
  GenerateStats& st = r.stats;
  st.n_prompt = n_prompt;
  std::vector<KVCache> caches;
  caches.push_back(engine.make_cache(capacity, pool));
  std::vector<float> logits0(static_cast<size_t>(V));
  std::vector<int32_t> pos(prompt.size());
  std::iota(pos.begin(), pos.end(), 0);
  const Stopwatch total;
  Stopwatch sw;
  engine.forward(caches[0], prompt, pos, 1, logits0.data());
  st.prompt_seconds = sw.seconds();
  for (int i = 1; i < n_seq; ++i) caches.push_back(caches[0].fork(n_prompt));

  // Each sequence decodes in turn from the prompt's logits, with its own seed.
  r.tokens.resize(size_t(n_seq));
  for (int i = 0; i < n_seq; ++i) {
    GenerateParams p = params;
    p.sampler.seed += uint64_t(i);
    std::vector<float> logits = logits0;
    GenerateStats s;
    const auto emit = [&](int32_t id) {
      if (on_token) on_token(i, id);
    };
    decode_loop(engine, caches[size_t(i)], logits, int32_t(n_prompt), p, total, s, emit,
                &r.tokens[size_t(i)]);
    if (i == 0) st.ttft_seconds = s.ttft_seconds;
    st.n_generated += s.n_generated;
    st.n_decode_steps += s.n_decode_steps;
    st.decode_seconds += s.decode_seconds;
    st.step_seconds.insert(st.step_seconds.end(), s.step_seconds.begin(), s.step_seconds.end());
  }
  r.kv = caches[0].stats();
  r.kv_used_bytes = caches[0].used_bytes();
  for (const KVCache& c : caches)
    r.kv_unshared_bytes += size_t((c.size() + kv.page_tokens - 1) / kv.page_tokens) * c.page_bytes();
  return r;
}

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  // Find the end of the last complete character.
  size_t end = pending_.size();
  size_t i = end;
  int back = 0;
  while (i > 0 && back < 4) {
    --i;
    ++back;
    const auto c = static_cast<unsigned char>(pending_[i]);
    if ((c & 0xC0) != 0x80) {  // a lead byte (or ASCII)
      const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
      if (back < len) end = i;  // incomplete: hold it back
      break;
    }
  }
  std::string ready = pending_.substr(0, end);
  pending_.erase(0, end);
  return ready;
}

std::string Utf8Stream::flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace tandem
