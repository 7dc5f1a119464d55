// Sequence-parallel runs of the tandem program under a real mpirun: P-rank logits
// equal the 1-rank logits, and sharded-KV generation reproduces single-rank tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "support/test_paths.hpp"

using tandem::test::mpirun;
using tandem::test::run;
using tandem::test::RunResult;
using tandem::test::shared_path;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> v;
  float x;
  while (in.read(reinterpret_cast<char*>(&x), sizeof x)) v.push_back(x);
  return v;
}

// A small grouped-query model with a vocabulary, made once.
const std::string& model() {
  static const std::string path = [] {
    const std::string p = temp_dir() + "/mpi-model.gguf";
    const auto r = run(tandem_bin() + " make-model --type f32 --dim 96 --layers 2 --heads 12 "
                       "--kv-heads 4 --ff 128 --vocab-size 500 -o " + p);
    EXPECT_EQ(r.code, 0) << r.out;
    return p;
  }();
  return path;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& ref, size_t cols) {
  double worst = 0;
  for (size_t r = 0; r * cols < ref.size(); ++r) {
    double diff = 0, scale = 1e-20;
    for (size_t c = 0; c < cols; ++c) {
      diff = std::max(diff, double(std::fabs(a[r * cols + c] - ref[r * cols + c])));
      scale = std::max(scale, double(std::fabs(ref[r * cols + c])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

// The logits command of the tests (every row of 383 random tokens), up to its --out path.
std::string logits_args() {
  return " logits -m " + model() + " --random-tokens 383 --seed 9 -t 1 --out ";
}

// Its one-rank logits, made once.
const std::vector<float>& single_rank_logits() {
  static const std::vector<float> ref = [] {
    const std::string path = temp_dir() + "/ref.f32";
    const auto r = run(tandem_bin() + logits_args() + path);
    EXPECT_EQ(r.code, 0) << r.out;
    return read_f32(path);
  }();
  return ref;
}

}  // namespace

TEST(MpiCli, LogitsEqualSingleRankForEveryScheme) {
  const std::string args = logits_args();
  const auto& ref = single_rank_logits();
  ASSERT_EQ(ref.size(), 383u * 500u);
  RunResult r;
  for (int np : {2, 3, 4}) {
    for (std::string scheme : {"ring", "zigzag", "ulysses", "pass-q", "auto", "hybrid"}) {
      if (scheme == "hybrid") {
        if (np != 4) continue;
        scheme = "hybrid:2x2";
      }
      const std::string out = temp_dir() + "/sp.f32";
      std::remove(out.c_str());
      r = run(mpirun(np) + tandem_bin() + args + out + " --sp " + scheme);
      ASSERT_EQ(r.code, 0) << "np " << np << " " << scheme << ": " << r.out;
      const auto got = read_f32(out);
      ASSERT_EQ(got.size(), ref.size()) << "np " << np << " " << scheme;
      EXPECT_LE(max_rel_diff(got, ref, 500), 1e-4) << "np " << np << " " << scheme;
    }
  }
}

// A chunked prefill (--sp-chunk 16: bands of 16 x P tokens, one step each) with the
// pass-KV conveyor in chunks of 32 rows (TANDEM_RING_CHUNK=32: a block of up to ~190
// cached rows is several messages of 8 KiB, past Open MPI's 4 KiB shared-memory eager
// limit, so a rank that waited on its sends before posting its receives would deadlock
// under the rendezvous protocol) still equals one rank.
TEST(MpiCli, ChunkedPrefillOnTheConveyorEqualsSingleRank) {
  const std::string args = logits_args();
  const auto& ref = single_rank_logits();
  ASSERT_EQ(ref.size(), 383u * 500u);
  RunResult r;
  for (int np : {2, 3}) {
    for (const std::string scheme : {"ring", "zigzag", "auto", "pass-q"}) {
      const std::string out = temp_dir() + "/sp-chunked.f32";
      std::remove(out.c_str());
      r = run("TANDEM_RING_CHUNK=32 " + mpirun(np) + tandem_bin() + args + out + " --sp " + scheme +
              " --sp-chunk 16");
      ASSERT_EQ(r.code, 0) << "np " << np << " " << scheme << ": " << r.out;
      const auto got = read_f32(out);
      ASSERT_EQ(got.size(), ref.size()) << "np " << np << " " << scheme;
      EXPECT_LE(max_rel_diff(got, ref, 500), 1e-4) << "np " << np << " " << scheme;
    }
  }
}

TEST(MpiCli, ShardedGenerationMatchesSingleRank) {
  const std::string args = " generate -m " + shared_path("models/tiny-f16.gguf") +
                           " -p 'Once upon a time' -n 24 --temp 0.9 --seed 11 -t 1 2>/dev/null";
  const auto single = run("{ " + tandem_bin() + args + "; }");
  ASSERT_EQ(single.code, 0) << single.out;
  for (int np : {2, 3}) {
    const auto sp = run("{ " + mpirun(np) + tandem_bin() + args + " --sp zigzag; }");
    ASSERT_EQ(sp.code, 0) << sp.out;
    EXPECT_EQ(sp.out, single.out) << "np " << np;
  }
}
