// The synthetic-model generator against its specification (shared/models/README.md)
// and against the reference files written by another implementation.
#include "tandem/model/synth.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <numbers>

#include "support/test_paths.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/fp16.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/model.hpp"

using namespace tandem;

namespace {

const std::string kVocab = "vocab/ggml-vocab-llama-spm.gguf";

// Straightforward FNV-1a, written out independently of the library.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;  // 0xCBF29CE484222325
  for (size_t i = 0; i < s.size(); ++i) {
    h = h ^ uint64_t(static_cast<unsigned char>(s[i]));
    h = h * 1099511628211ull;  // 0x100000001B3
  }
  return h;
}

uint64_t r(uint64_t key, uint64_t n) {
  uint64_t z = key + n * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Element i of the stream, by the README formula.
float element(uint64_t key, int64_t i) {
  const uint64_t j = uint64_t(i / 2);
  const double u1 = double((r(key, 2 * j + 1) >> 11) + 1) * std::ldexp(1.0, -53);
  const double u2 = double(r(key, 2 * j + 2) >> 11) * std::ldexp(1.0, -53);
  const double rad = std::sqrt(-2.0 * std::log(u1));
  const double theta = 2.0 * std::numbers::pi * u2;
  return float((0.02 * rad) * (i % 2 == 0 ? std::cos(theta) : std::sin(theta)));
}

bool same_value(const gguf::Value& a, const gguf::Value& b) {
  if (a.type != b.type || a.v.index() != b.v.index()) return false;
  if (const auto* x = a.as_array()) {
    const auto* y = b.as_array();
    if (x->elem != y->elem || x->items.size() != y->items.size()) return false;
    for (size_t i = 0; i < x->items.size(); ++i)
      if (!same_value(x->items[i], y->items[i])) return false;
    return true;
  }
  if (const auto* s = a.as_string()) return *s == *b.as_string();
  if (a.is_float()) return *a.as_float() == *b.as_float();
  if (std::holds_alternative<bool>(a.v)) return std::get<bool>(a.v) == std::get<bool>(b.v);
  if (std::holds_alternative<uint64_t>(a.v)) return std::get<uint64_t>(a.v) == std::get<uint64_t>(b.v);
  return std::get<int64_t>(a.v) == std::get<int64_t>(b.v);
}

void expect_same_metadata(const gguf::File& ours, const gguf::File& ref) {
  ASSERT_EQ(ours.metadata().size(), ref.metadata().size());
  for (size_t i = 0; i < ref.metadata().size(); ++i) {
    const auto& [rk, rv] = ref.metadata()[i];
    const auto& [ok, ov] = ours.metadata()[i];
    EXPECT_EQ(ok, rk) << "key #" << i;
    EXPECT_TRUE(same_value(ov, rv)) << rk << ": ours " << ov.to_string() << ", reference "
                                    << rv.to_string();
  }
}

void expect_same_tensor_table(const gguf::File& ours, const gguf::File& ref) {
  ASSERT_EQ(ours.tensors().size(), ref.tensors().size());
  for (size_t i = 0; i < ref.tensors().size(); ++i) {
    const auto& a = ours.tensors()[i];
    const auto& b = ref.tensors()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.type, b.type) << b.name;
    EXPECT_EQ(a.ne, b.ne) << b.name;
    EXPECT_EQ(a.offset, b.offset) << b.name;
  }
  EXPECT_EQ(ours.data_offset(), ref.data_offset());
  EXPECT_EQ(ours.file_size(), ref.file_size());
}

std::string make(SynthSpec s, const std::string& file) {
  const std::string path = test::temp_dir() + "/" + file;
  write_synthetic_model(s, path);
  return path;
}

uint16_t half_at(const uint8_t* p, int64_t i) {
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return h;
}

}  // namespace

TEST(SynthGenerator, KeyIsFnv1aOfSeedAndName) {
  const uint64_t key = fnv1a("1234:blk.0.attn_q.weight");
  EXPECT_EQ(synth_key(1234, "blk.0.attn_q.weight"), key);
  EXPECT_EQ(synth_key(0, ""), fnv1a("0:"));
  EXPECT_EQ(synth_key(18446744073709551615ull, "x"), fnv1a("18446744073709551615:x"));
  EXPECT_EQ(fnv1a(""), 0xCBF29CE484222325ull);
  EXPECT_EQ(fnv1a("a"), 0xAF63DC4C8601EC8Cull);  // published FNV-1a test vector
}

TEST(SynthGenerator, FirstValuesFollowTheFormula) {
  const uint64_t key = fnv1a("1234:blk.0.attn_q.weight");
  float out[2];
  fill_normal(1234, "blk.0.attn_q.weight", out, 2);
  // By hand: pair 0 uses r(1) and r(2).
  const double u1 = double((r(key, 1) >> 11) + 1) / 9007199254740992.0;
  const double u2 = double(r(key, 2) >> 11) / 9007199254740992.0;
  const double rad = std::sqrt(-2.0 * std::log(u1));
  EXPECT_EQ(out[0], float(0.02 * rad * std::cos(2.0 * std::numbers::pi * u2)));
  EXPECT_EQ(out[1], float(0.02 * rad * std::sin(2.0 * std::numbers::pi * u2)));
  EXPECT_NE(out[0], out[1]);
}

TEST(SynthGenerator, LongStreamsMatchElementwiseAndOddCountsDropTheLast) {
  const int64_t n = 300001;  // long enough to be split over threads; odd
  std::vector<float> v(size_t(n) + 1, -99.0f);
  fill_normal(77, "blk.3.ffn_up.weight", v.data(), n);
  EXPECT_EQ(v[size_t(n)], -99.0f);  // nothing written past n
  const uint64_t key = fnv1a("77:blk.3.ffn_up.weight");
  for (int64_t i = 0; i < n; i += 997) ASSERT_EQ(v[size_t(i)], element(key, i)) << i;
  EXPECT_EQ(v[size_t(n - 1)], element(key, n - 1));
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    sum += v[size_t(i)];
    sq += double(v[size_t(i)]) * v[size_t(i)];
  }
  EXPECT_NEAR(sum / double(n), 0.0, 2e-4);
  EXPECT_NEAR(std::sqrt(sq / double(n)), 0.02, 2e-4);
}

TEST(SynthPresets, Shapes) {
  const auto t = synth_preset("tiny");
  EXPECT_EQ(t.n_embd, 288);
  EXPECT_EQ(t.n_layer, 6);
  EXPECT_EQ(t.n_head, 6);
  EXPECT_EQ(t.n_head_kv, 6);
  EXPECT_EQ(t.n_ff, 768);
  EXPECT_EQ(t.n_ctx, 32768);
  const auto s = synth_preset("small");
  EXPECT_EQ(s.n_embd, 768);
  EXPECT_EQ(s.n_layer, 12);
  EXPECT_EQ(s.n_head, 12);
  EXPECT_EQ(s.n_head_kv, 4);
  EXPECT_EQ(s.n_ff, 2048);
  EXPECT_EQ(s.n_ctx, 32768);
  EXPECT_EQ(s.rope_freq_base, 10000.0f);
  EXPECT_EQ(s.rms_eps, 1e-5f);
  EXPECT_THROW(synth_preset("huge"), Error);
}

// The F16 reference: same metadata, table and layout; every value within one F16 ulp
// (in fact bit-identical: the whole file is byte-for-byte the same).
TEST(SynthReference, TinyF16MatchesSharedFile) {
  SynthSpec s = synth_preset("tiny");
  s.type = DType::F16;
  s.vocab_path = test::shared_path(kVocab);
  const auto ours = gguf::File::open(make(s, "tiny-f16.gguf"));
  const auto ref = gguf::File::open(test::shared_path("models/tiny-f16.gguf"));
  expect_same_metadata(ours, ref);
  expect_same_tensor_table(ours, ref);
  int64_t values = 0, differ = 0;
  for (const auto& rt : ref.tensors()) {
    const auto* ot = ours.find_tensor(rt.name);
    ASSERT_TRUE(ot);
    const uint8_t* a = ours.tensor_data(*ot);
    const uint8_t* b = ref.tensor_data(rt);
    const int64_t n = rt.nelements();
    values += n;
    if (rt.type == DType::F32) {  // norms: exactly 1.0
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(std::memcmp(a + 4 * i, b + 4 * i, 4), 0);
      continue;
    }
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t x = half_at(a, i), y = half_at(b, i);
      if (x == y) continue;
      ++differ;
      const float fx = fp16_to_f32(x), fy = fp16_to_f32(y);
      // one ulp: neighbouring encodings of the same sign
      ASSERT_TRUE(std::signbit(fx) == std::signbit(fy) && std::abs(int(x) - int(y)) <= 1)
          << rt.name << "[" << i << "]: " << fx << " vs " << fy;
    }
  }
  std::printf("tiny-f16: %lld of %lld values differ from the reference (bit-exact: %s)\n",
              static_cast<long long>(differ), static_cast<long long>(values),
              differ == 0 ? "yes" : "no");
  EXPECT_EQ(differ, 0) << "values rounded differently from the reference writer";
}

// The Q4_0 reference (llama-quantize --pure): every block bit-identical.
TEST(SynthReference, TinyQ4_0MatchesSharedFile) {
  SynthSpec s = synth_preset("tiny");
  s.type = DType::Q4_0;
  s.vocab_path = test::shared_path(kVocab);
  const auto ours = gguf::File::open(make(s, "tiny-q4_0.gguf"));
  const auto ref = gguf::File::open(test::shared_path("models/tiny-q4_0-pure.gguf"));
  expect_same_metadata(ours, ref);
  expect_same_tensor_table(ours, ref);
  int64_t blocks = 0, differ = 0;
  for (const auto& rt : ref.tensors()) {
    const auto* ot = ours.find_tensor(rt.name);
    ASSERT_TRUE(ot);
    const uint8_t* a = ours.tensor_data(*ot);
    const uint8_t* b = ref.tensor_data(rt);
    if (rt.type != DType::Q4_0) {
      EXPECT_EQ(std::memcmp(a, b, rt.nbytes), 0) << rt.name;
      continue;
    }
    const int64_t nb = int64_t(rt.nbytes / sizeof(BlockQ4_0));
    blocks += nb;
    for (int64_t k = 0; k < nb; ++k)
      if (std::memcmp(a + k * 18, b + k * 18, 18) != 0) ++differ;
  }
  std::printf("tiny-q4_0: %lld of %lld Q4_0 blocks differ from the reference\n",
              static_cast<long long>(differ), static_cast<long long>(blocks));
  EXPECT_EQ(differ, 0);
}

TEST(SynthModel, VocabSizeGivesNoTokenizerAndLoads) {
  SynthSpec s = synth_preset("tiny");
  s.n_embd = 64;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_ff = 96;
  s.n_layer = 2;
  s.n_vocab = 300;
  s.type = DType::Q8_0;
  std::vector<std::pair<int, int>> calls;
  const std::string path = test::temp_dir() + "/gqa.gguf";
  write_synthetic_model(s, path, [&](int done, int total) { calls.emplace_back(done, total); });
  const int n_tensors = 3 + 2 * 9;
  ASSERT_EQ(calls.size(), size_t(n_tensors));
  for (int k = 0; k < n_tensors; ++k) EXPECT_EQ(calls[size_t(k)], std::make_pair(k + 1, n_tensors));
  const auto f = gguf::File::open(path);
  for (const auto& [k, v] : f.metadata()) EXPECT_NE(k.rfind("tokenizer.", 0), 0u) << k;
  EXPECT_EQ(f.get_int("llama.vocab_size"), 300);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 2);
  EXPECT_EQ(f.get_int("llama.rope.dimension_count"), 16);
  EXPECT_EQ(f.get_int("general.file_type"), 7);
  EXPECT_EQ(f.get_string("general.name"), "synthetic-llama");
  const auto m = Model::load(path);
  EXPECT_EQ(m->tokenizer(), nullptr);
  EXPECT_FALSE(m->output_tied);
  EXPECT_EQ(m->hparams().kv_dim(), 32);
  EXPECT_EQ(m->layers[1].wk.type, DType::Q8_0);
}

TEST(SynthModel, Qwen2WithBiasesAndTiedOutput) {
  SynthSpec s;
  s.arch = "qwen2";
  s.n_embd = 64;
  s.n_head = 4;
  s.n_head_kv = 1;
  s.n_ff = 128;
  s.n_layer = 1;
  s.n_vocab = 50;
  s.type = DType::BF16;
  s.qkv_bias = true;
  s.tied_output = true;
  s.seed = 9;
  const std::string path = make(s, "qwen2.gguf");
  const auto f = gguf::File::open(path);
  EXPECT_EQ(f.get_string("general.architecture"), "qwen2");
  EXPECT_EQ(f.get_int("qwen2.block_count"), 1);
  EXPECT_FALSE(f.find("llama.block_count"));
  EXPECT_FALSE(f.find_tensor("output.weight"));
  const auto* bq = f.find_tensor("blk.0.attn_q.bias");
  ASSERT_TRUE(bq);
  EXPECT_EQ(bq->type, DType::F32);
  EXPECT_EQ(bq->ne, (std::vector<int64_t>{64}));
  std::vector<float> expect(16);
  fill_normal(9, "blk.0.attn_k.bias", expect.data(), 16);
  const auto* bk = f.find_tensor("blk.0.attn_k.bias");
  ASSERT_TRUE(bk);
  EXPECT_EQ(std::memcmp(f.tensor_data(*bk), expect.data(), 64), 0);
  const auto* wk = f.find_tensor("blk.0.attn_k.weight");
  ASSERT_TRUE(wk);
  EXPECT_EQ(wk->type, DType::BF16);
  EXPECT_EQ(wk->ne, (std::vector<int64_t>{64, 16}));
  const auto m = Model::load(path);
  EXPECT_TRUE(m->output_tied);
  EXPECT_NE(m->layers[0].bv, nullptr);
}

TEST(SynthModel, SmallPresetHas124_7MParameters) {
  SynthSpec s = synth_preset("small");
  s.type = DType::Q4_0;
  s.n_vocab = 32000;
  const std::string path = make(s, "small-q4_0.gguf");
  {
    const auto f = gguf::File::open(path);
    int64_t params = 0;
    for (const auto& t : f.tensors()) params += t.nelements();
    EXPECT_EQ(params, 124668672);
    EXPECT_EQ(f.tensors().size(), size_t(3 + 12 * 9));
    EXPECT_EQ(f.get_string("general.name"), "synthetic-llama-small");
    const auto* wv = f.find_tensor("blk.11.attn_v.weight");
    ASSERT_TRUE(wv);
    EXPECT_EQ(wv->ne, (std::vector<int64_t>{768, 256}));
  }
  std::remove(path.c_str());
}

TEST(SynthModel, RejectsBadSpecs) {
  auto expect_bad = [](SynthSpec s, const char* what) {
    try {
      write_synthetic_model(s, test::temp_dir() + "/bad.gguf");
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput) << what;
    }
  };
  SynthSpec base;
  base.n_vocab = 32;
  SynthSpec s = base;
  s.n_head_kv = 4;  // does not divide 6
  expect_bad(s, "G not dividing H");
  s = base;
  s.n_head = 5;
  expect_bad(s, "H not dividing D");
  s = base;
  s.n_vocab = 0;
  expect_bad(s, "no vocabulary");
  s = base;
  s.n_embd = 0;
  expect_bad(s, "zero D");
  s = base;
  s.n_ff = 100;
  s.type = DType::Q4_0;
  expect_bad(s, "F not a multiple of 32 for q4_0");
  s = base;
  s.arch = "gpt2";
  expect_bad(s, "unknown arch");
  s = base;
  s.vocab_path = test::temp_dir() + "/no-such-vocab.gguf";
  expect_bad(s, "missing vocab file");
  s = base;
  s.type = DType::I32;
  expect_bad(s, "integer matrices");
}
