// The peer's logits of a prompt: writes [n][V] float32 of a GGUF model as computed by
// the peer's library (libllama, built outside this repository), for comparison with
// `tandem logits`. Built and run by scripts/peer-logits.sh; KV cache in f32, one batch.
// usage: dump_logits MODEL OUT.f32 id1 id2 ...   (env: THREADS, FA=0/1)
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "llama.h"
int main(int argc, char** argv) {
  if (argc < 4) { std::fprintf(stderr, "usage: %s MODEL OUT.f32 id...\n", argv[0]); return 2; }
  std::vector<llama_token> ids;
  for (int i = 3; i < argc; ++i) ids.push_back(std::atoi(argv[i]));
  llama_backend_init();
  auto mp = llama_model_default_params();
  llama_model* m = llama_model_load_from_file(argv[1], mp);
  if (!m) { std::fprintf(stderr, "load failed\n"); return 1; }
  auto cp = llama_context_default_params();
  cp.n_ctx = ids.size() + 16;
  cp.n_batch = cp.n_ubatch = ids.size();
  const char* th = std::getenv("THREADS");
  cp.n_threads = cp.n_threads_batch = th ? std::atoi(th) : 2;
  const char* fa = std::getenv("FA");
  cp.flash_attn_type = fa && fa[0] == '1' ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32;
  llama_context* ctx = llama_init_from_model(m, cp);
  if (!ctx) { std::fprintf(stderr, "context failed\n"); return 1; }
  const int V = llama_vocab_n_tokens(llama_model_get_vocab(m));
  llama_batch b = llama_batch_init(ids.size(), 0, 1);
  b.n_tokens = ids.size();
  for (size_t i = 0; i < ids.size(); ++i) {
    b.token[i] = ids[i]; b.pos[i] = i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1;
  }
  if (llama_decode(ctx, b) != 0) { std::fprintf(stderr, "decode failed\n"); return 1; }
  FILE* f = std::fopen(argv[2], "wb");
  for (size_t i = 0; i < ids.size(); ++i) std::fwrite(llama_get_logits_ith(ctx, i), 4, V, f);
  std::fclose(f);
  std::fprintf(stderr, "wrote %zu x %d logits\n", ids.size(), V);
  llama_batch_free(b); llama_free(ctx); llama_model_free(m);
  return 0;
}
