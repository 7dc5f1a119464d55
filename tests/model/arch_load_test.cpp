// Loading each architecture: the traits HParams gives it, fused tensors bound as views,
// the rope scaling keys, and what is refused by name (rope scaling types, long-context
// rope factors, sliding windows where the architecture has none, tensors it does not use).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <numbers>

#include "support/test_model.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/model.hpp"

using namespace tandem;

namespace {

SynthSpec spec(const std::string& arch) { return test::tiny_arch_spec(arch, 64, 40); }

// A copy of the file at `path` with edits to its metadata and tensor list.
struct Edit {
  std::vector<std::pair<std::string, gguf::Value>> keys;
  std::vector<std::string> drop;  // keys or tensors
  std::vector<std::pair<std::string, int64_t>> extra_vectors;  // name, length (f32 ones)
};

Edit with_keys(std::vector<std::pair<std::string, gguf::Value>> keys) {
  Edit e;
  e.keys = std::move(keys);
  return e;
}
Edit without(std::vector<std::string> names) {
  Edit e;
  e.drop = std::move(names);
  return e;
}
Edit with_vectors(std::vector<std::pair<std::string, int64_t>> v) {
  Edit e;
  e.extra_vectors = std::move(v);
  return e;
}

std::string rewrite(const std::string& path, const std::string& name, const Edit& e) {
  const auto f = gguf::File::open(path);
  gguf::Writer w(3);
  auto dropped = [&](const std::string& n) {
    return std::find(e.drop.begin(), e.drop.end(), n) != e.drop.end();
  };
  for (const auto& [k, v] : f.metadata())
    if (!dropped(k)) w.set(k, v);
  for (const auto& [k, v] : e.keys) w.set(k, v);
  for (const auto& t : f.tensors()) {
    if (dropped(t.name)) continue;
    const uint8_t* p = f.tensor_data(t);
    w.add_tensor(t.name, t.type, t.ne, std::vector<uint8_t>(p, p + t.nbytes));
  }
  for (const auto& [n, len] : e.extra_vectors) {
    std::vector<float> ones(size_t(len), 1.0f);
    std::vector<uint8_t> bytes(ones.size() * sizeof(float));
    std::memcpy(bytes.data(), ones.data(), bytes.size());
    w.add_tensor(n, DType::F32, {len}, std::move(bytes));
  }
  const std::string out = test::temp_dir() + "/" + name + ".gguf";
  w.write(out);
  return out;
}

// Loading `path` fails with BadInput whose message holds every string of `names`.
void expect_refused(const std::string& path, std::vector<std::string> names) {
  try {
    Model::load(path);
    ADD_FAILURE() << path << " loaded";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::BadInput) << err.what();
    for (const auto& n : names) EXPECT_NE(std::string(err.what()).find(n), std::string::npos)
                                    << err.what() << " lacks " << n;
  }
}

TEST(ArchLoad, TraitsPerArchitecture) {
  struct Want {
    const char* arch;
    bool neox, qk_norm;
  };
  for (const Want w : {Want{"llama", false, false}, Want{"mistral", false, false},
                       Want{"qwen2", true, false}, Want{"qwen3", true, true},
                       Want{"phi3", true, false}}) {
    const auto m = Model::load(test::write_test_model(std::string("traits-") + w.arch, spec(w.arch)));
    const HParams& h = m->hparams();
    EXPECT_EQ(h.rope_neox, w.neox) << w.arch;
    EXPECT_EQ(h.qk_norm, w.qk_norm) << w.arch;
    EXPECT_EQ(m->layers[1].q_norm != nullptr, w.qk_norm) << w.arch;
    EXPECT_TRUE(h.local_layers.empty()) << w.arch;
    EXPECT_EQ(h.final_softcap, 0.0f) << w.arch;
  }
}

// gemma2: local layers 0, 2, ... (window from the file, else 4096), rope of the local
// layers the global one, caps 50 / 30 unless the keys say; gemma3: 5 local then 1 global
// when the file has a window, local rope base 10000 without scaling, no attention cap.
TEST(ArchLoad, GemmaTraits) {
  SynthSpec s = spec("gemma2");
  s.n_layer = 4;
  s.sliding_window = 7;
  s.rope_scaling = "linear:2";
  const auto g2 = Model::load(test::write_test_model("gemma2-traits", s));
  const HParams& h2 = g2->hparams();
  EXPECT_TRUE(h2.rope_neox && h2.post_norms && h2.gelu_ffn && h2.embed_scale && !h2.qk_norm);
  EXPECT_EQ(h2.local_layers, (std::vector<uint8_t>{1, 0, 1, 0}));
  EXPECT_EQ(h2.layer_window(0), 7);
  EXPECT_EQ(h2.layer_window(1), 0);
  EXPECT_EQ(h2.rope_freq_base_local, h2.rope_freq_base);
  EXPECT_FLOAT_EQ(h2.rope_freq_scale_local, 0.5f);
  EXPECT_EQ(h2.attn_softcap, 50.0f);
  EXPECT_EQ(h2.final_softcap, 30.0f);
  EXPECT_TRUE(g2->output_tied);
  EXPECT_NE(g2->layers[3].post_ffn_norm, nullptr);
  const auto g2b = Model::load(rewrite(test::write_test_model("gemma2-keys", s), "gemma2-nokeys",
                                       without({"gemma2.attention.sliding_window",
                                                "gemma2.attn_logit_softcapping"})));
  EXPECT_EQ(g2b->hparams().sliding_window, 4096);
  EXPECT_EQ(g2b->hparams().attn_softcap, 50.0f);

  s = spec("gemma3");
  s.n_layer = 8;
  s.sliding_window = 9;
  s.rope_freq_base = 1e6f;
  s.rope_scaling = "linear:8";
  const std::string g3path = test::write_test_model("gemma3-traits", s);
  const auto g3 = Model::load(g3path);
  const HParams& h3 = g3->hparams();
  EXPECT_TRUE(h3.qk_norm && h3.post_norms && h3.gelu_ffn && h3.embed_scale);
  EXPECT_EQ(h3.local_layers, (std::vector<uint8_t>{1, 1, 1, 1, 1, 0, 1, 1}));
  EXPECT_EQ(h3.rope_freq_base_local, 10000.0f);
  EXPECT_EQ(h3.rope_freq_scale_local, 1.0f);
  EXPECT_FLOAT_EQ(h3.rope_freq_scale, 0.125f);
  EXPECT_EQ(h3.attn_softcap, 0.0f);
  EXPECT_EQ(h3.final_softcap, 0.0f);
  // The file's own pattern and local base win; no window: no local layer.
  std::vector<gguf::Value> pattern;
  for (int l = 0; l < 8; ++l) pattern.push_back(gguf::Value::boolean(l % 2 == 0));
  const auto g3p = Model::load(rewrite(
      g3path, "gemma3-pattern",
      with_keys({{"gemma3.attention.sliding_window_pattern",
                  gguf::Value::array(gguf::ValueType::BOOL, pattern)},
                 {"gemma3.rope.freq_base_swa", gguf::Value::f32(5000.0f)}})));
  EXPECT_EQ(g3p->hparams().local_layers, (std::vector<uint8_t>{1, 0, 1, 0, 1, 0, 1, 0}));
  EXPECT_EQ(g3p->hparams().rope_freq_base_local, 5000.0f);
  const auto g3n = Model::load(rewrite(g3path, "gemma3-nowindow",
                                       without({"gemma3.attention.sliding_window"})));
  EXPECT_TRUE(g3n->hparams().local_layers.empty());
  expect_refused(rewrite(g3path, "gemma3-attn-cap",
                         with_keys({{"gemma3.attn_logit_softcapping", gguf::Value::f32(50.0f)}})),
                 {"gemma3.attn_logit_softcapping"});
}

// gemma2 of 46 layers and gemma3 of 62 (their 27B models) scale queries by 1/sqrt(D/H);
// other block counts, and other architectures of those counts, by 1/sqrt(d).
TEST(ArchLoad, GemmaQueryScaleOfThe27BModels) {
  for (const auto& [arch, wide] : {std::pair<std::string, int64_t>{"gemma2", 46}, {"gemma3", 62}}) {
    for (const int64_t layers : {wide, wide - 1}) {
      for (const std::string& a : {arch, std::string("llama")}) {
        SynthSpec s = spec(a);
        s.n_layer = layers;
        s.head_dim = 12;  // D/H = 8
        const auto m = Model::load(test::write_test_model(a + "-scale-" + std::to_string(layers), s));
        const bool scaled = a == arch && layers == wide;
        EXPECT_FLOAT_EQ(m->hparams().query_scale(), 1.0f / std::sqrt(scaled ? 8.0f : 12.0f))
            << a << " with " << layers << " layers";
      }
    }
  }
}

TEST(ArchLoad, Qwen3HeadDimFromKeyLength) {
  SynthSpec s = spec("qwen3");
  s.head_dim = 12;
  const auto m = Model::load(test::write_test_model("qwen3-d12", s));
  EXPECT_EQ(m->hparams().head_dim, 12);
  EXPECT_EQ(m->hparams().q_dim(), 48);
  EXPECT_EQ(m->layers[0].wq.rows, 48);
  EXPECT_EQ(m->layers[0].wo.cols, 48);
  EXPECT_EQ(m->layers[0].wk.rows, 24);
}

// phi3's attn_qkv and [2F] ffn_up are bound as row ranges of the one matrix.
TEST(ArchLoad, Phi3FusedTensorsAreViews) {
  const auto m = Model::load(test::write_test_model("phi3-views", spec("phi3")));
  const auto& f = m->file();
  for (int l = 0; l < 2; ++l) {
    const LayerWeights& w = m->layers[size_t(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    const uint8_t* qkv = f.tensor_data(*f.find_tensor(p + "attn_qkv.weight"));
    const uint8_t* up = f.tensor_data(*f.find_tensor(p + "ffn_up.weight"));
    const size_t row = 32 * sizeof(float);
    EXPECT_EQ(w.wq.data, qkv);
    EXPECT_EQ(w.wk.data, qkv + 32 * row);
    EXPECT_EQ(w.wv.data, qkv + 48 * row);
    EXPECT_EQ(w.wq.rows, 32);
    EXPECT_EQ(w.wv.rows, 16);
    EXPECT_EQ(w.w_gate.data, up);
    EXPECT_EQ(w.w_up.data, up + 64 * row);
    EXPECT_EQ(w.w_up.rows, 64);
  }
}

TEST(ArchLoad, RopeScalingLinearAndLlama3Factors) {
  SynthSpec s = spec("llama");
  s.rope_scaling = "linear:4";
  const auto lin = Model::load(test::write_test_model("rope-linear", s));
  EXPECT_FLOAT_EQ(lin->hparams().rope_freq_scale, 0.25f);
  EXPECT_EQ(lin->rope_freqs, nullptr);

  s.rope_scaling = "llama3";
  s.rope_freq_base = 500000.0f;
  const auto l3 = Model::load(test::write_test_model("rope-llama3", s));
  EXPECT_FLOAT_EQ(l3->hparams().rope_freq_scale, 1.0f);
  ASSERT_NE(l3->rope_freqs, nullptr);
  // Llama 3.1's recipe, written out: wavelengths under 8192/4 keep their frequency, those
  // over 8192/1 are divided by 8, those between are interpolated.
  const int d = 8;
  int seen_low = 0, seen_high = 0, seen_mid = 0;
  for (int i = 0; i < d / 2; ++i) {
    const double wavelen = 2 * std::numbers::pi * std::pow(500000.0, 2.0 * i / d);
    double want = 1.0;
    if (wavelen > 8192.0) {
      want = 8.0, ++seen_high;
    } else if (wavelen >= 2048.0) {
      const double smooth = (8192.0 / wavelen - 1.0) / 3.0;
      want = 1.0 / ((1.0 - smooth) / 8.0 + smooth), ++seen_mid;
    } else {
      ++seen_low;
    }
    EXPECT_NEAR(l3->rope_freqs[i], want, 1e-5 * want) << i;
  }
  EXPECT_GT(seen_low, 0);
  EXPECT_GT(seen_high, 0);
  (void)seen_mid;

  // "none" keeps the frequencies whatever the factor says.
  const std::string none = rewrite(test::write_test_model("rope-lin2", spec("llama")), "rope-none",
                                   with_keys({{"llama.rope.scaling.type", gguf::Value::str("none")},
                                              {"llama.rope.scaling.factor", gguf::Value::f32(4.0f)}}));
  EXPECT_FLOAT_EQ(Model::load(none)->hparams().rope_freq_scale, 1.0f);
}

TEST(ArchLoad, RefusesWhatItDoesNotRunByName) {
  const std::string llama = test::write_test_model("refuse-llama", spec("llama"));
  expect_refused(rewrite(llama, "yarn", with_keys({{"llama.rope.scaling.type", gguf::Value::str("yarn")}})),
                 {"llama.rope.scaling.type", "yarn"});
  expect_refused(rewrite(llama, "window", with_keys({{"llama.attention.sliding_window", gguf::Value::u32(64)}})),
                 {"llama.attention.sliding_window"});
  expect_refused(rewrite(llama, "softcap", with_keys({{"llama.final_logit_softcapping", gguf::Value::f32(30.0f)}})),
                 {"llama.final_logit_softcapping"});
  expect_refused(rewrite(llama, "bad-factor", with_keys({{"llama.rope.scaling.factor", gguf::Value::f32(-2.0f)}})),
                 {"llama.rope.scaling.factor"});
  expect_refused(rewrite(llama, "arch", with_keys({{"general.architecture", gguf::Value::str("gpt2")}})),
                 {"general.architecture", "gpt2"});
  expect_refused(rewrite(llama, "no-norm", without({"blk.1.ffn_norm.weight"})), {"blk.1.ffn_norm.weight"});
  // A tensor the architecture does not read (here a qwen3 norm in a llama file).
  expect_refused(rewrite(llama, "extra", with_vectors({{"blk.0.attn_q_norm.weight", 8}})),
                 {"blk.0.attn_q_norm.weight"});
  expect_refused(rewrite(llama, "llama-longrope", with_vectors({{"rope_factors_short.weight", 4}})),
                 {"rope_factors_short.weight"});
  // qwen3 without its Q/K norms.
  const std::string qwen3 = test::write_test_model("refuse-qwen3", spec("qwen3"));
  expect_refused(rewrite(qwen3, "no-knorm", without({"blk.1.attn_k_norm.weight"})),
                 {"blk.1.attn_k_norm.weight"});
  // phi3 with long-context rope factors.
  const std::string phi3 = test::write_test_model("refuse-phi3", spec("phi3"));
  expect_refused(rewrite(phi3, "longrope", with_vectors({{"rope_factors_long.weight", 4}})),
                 {"rope_factors_long.weight"});
  // phi3's window is read and not applied (its files carry one).
  EXPECT_NO_THROW(Model::load(
      rewrite(phi3, "phi3-window", with_keys({{"phi3.attention.sliding_window", gguf::Value::u32(2047)}}))));
}

}  // namespace
