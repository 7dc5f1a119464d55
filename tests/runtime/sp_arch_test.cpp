// Sequence parallelism on every architecture: each registered scheme (ring, zigzag,
// Ulysses, hybrid, pass-Q, auto) on P in-process ranks, then sharded decode, gives the
// 1-rank logits (the strategies see only the attention inputs; the architecture's
// rope, norms, soft-caps and windows must reach them intact).
#include <gtest/gtest.h>

#include "support/sp_check.hpp"
#include "support/test_model.hpp"
#include "tandem/runtime/weight_layout.hpp"

using namespace tandem;
using namespace tandem::test;

namespace {

std::shared_ptr<Model> make_arch_model(const std::string& arch) {
  SynthSpec s = tiny_arch_spec(arch, 48, 96, 21);
  s.random_norms = true;
  s.weight_scale = 4.0f;
  if (arch == "qwen3" || arch == "gemma3") s.head_dim = 12;
  if (arch == "gemma2" || arch == "gemma3") {
    s.n_layer = arch == "gemma2" ? 2 : 6;  // local and global layers
    s.sliding_window = 5;                 // far shorter than the sequences: across ranks
  }
  return load_model(write_test_model("sp-arch-" + arch, s));
}

const char* kArchs[] = {"qwen2", "qwen3", "phi3", "gemma2", "gemma3"};

TEST(SpArch, EverySchemeEqualsOneRank) {
  for (const char* arch : kArchs) {
    const auto m = make_arch_model(arch);
    for (int64_t n : {13, 64}) {
      const auto ids = random_ids(n, m->hparams().n_vocab, uint32_t(n));
      const auto more = random_ids(8, m->hparams().n_vocab, uint32_t(n + 1));
      const Reference ref = reference(*m, ids, more);
      for (const parallel::SchemeDesc* d : parallel::scheme_registry()) {
        if (d->name == "local") continue;
        for (int P : {2, 3, 4}) {
          std::string name(d->name);
          if (name == "hybrid") {
            if (P != 4) continue;
            name = "hybrid:2x2";
          }
          const SpRun r = run_sp(m, ids, more, P, name, ref);
          const std::string what =
              std::string(arch) + " " + name + " P=" + std::to_string(P) + " N=" + std::to_string(n);
          EXPECT_LE(r.prefill, 1e-4) << what;
          EXPECT_LE(r.decode, 1e-4) << what << " decode";
        }
      }
    }
  }
}

}  // namespace
