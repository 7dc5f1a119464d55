#pragma once
// A plain float64 forward pass over an F32 GGUF file, written for the tests apart from
// the library: it reads the tensors by name and the shape keys itself, and knows each
// architecture's block from its own table below (not from HParams), so a fault in the
// loader, the graph or a kernel shows as a difference. Full recomputation of a prompt at
// positions 0..n-1; slow (every product in double), for small shapes only.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tandem/model/gguf.hpp"

namespace tandem::test {

// What each architecture does beyond the Llama block.
struct RefArch {
  bool neox = false;         // rotary pairs (i, i + n_rot/2)
  bool qk_norm = false;      // per-head RMSNorm of Q and K before rope
  bool post_norms = false;   // RMSNorm of the attention and FFN outputs
  bool gelu = false;         // GELU (tanh) gate instead of SiLU
  bool embed_scale = false;  // embeddings times sqrt(D)
  int swa_period = 0;        // local layers: l % period < period - 1 (0: none)
  bool local_base_is_global = false;  // local layers rotate with the global base
};

inline RefArch ref_arch(const std::string& a) {
  RefArch r;
  if (a == "llama" || a == "mistral") return r;
  r.neox = true;  // every other architecture here
  if (a == "qwen3") r.qk_norm = true;
  if (a == "gemma2" || a == "gemma3") {
    r.post_norms = r.gelu = r.embed_scale = true;
    r.qk_norm = a == "gemma3";
    r.swa_period = a == "gemma2" ? 2 : 6;
    r.local_base_is_global = a == "gemma2";
  }
  return r;
}

class ReferenceForward {
 public:
  explicit ReferenceForward(const std::string& path) : f_(gguf::File::open(path)) {
    arch_ = f_.get_string("general.architecture");
    ra_ = ref_arch(arch_);
    const std::string a = arch_ + ".";
    D_ = f_.get_int(a + "embedding_length");
    L_ = f_.get_int(a + "block_count");
    H_ = f_.get_int(a + "attention.head_count");
    G_ = f_.get_int(a + "attention.head_count_kv");
    F_ = f_.get_int(a + "feed_forward_length");
    d_ = f_.find_int(a + "attention.key_length").value_or(D_ / H_);
    n_rot_ = f_.find_int(a + "rope.dimension_count").value_or(d_);
    eps_ = f_.get_float(a + "attention.layer_norm_rms_epsilon");
    base_ = f_.find_float(a + "rope.freq_base").value_or(10000.0);
    if (f_.find_string(a + "rope.scaling.type").value_or("") == "linear")
      scale_ = 1.0 / f_.get_float(a + "rope.scaling.factor");
    window_ = f_.find_int(a + "attention.sliding_window").value_or(0);
    attn_cap_ = f_.find_float(a + "attn_logit_softcapping").value_or(0.0);
    final_cap_ = f_.find_float(a + "final_logit_softcapping").value_or(0.0);
    local_base_ = ra_.local_base_is_global ? base_ : 10000.0;
    V_ = tensor_info("token_embd.weight").ne[1];
    if (has("rope_freqs.weight")) freq_factors_ = t("rope_freqs.weight");
  }

  int64_t n_vocab() const { return V_; }

  // Logits [n][V] of the prompt ids at positions 0..n-1.
  std::vector<double> logits(const std::vector<int32_t>& ids) const {
    const int64_t n = int64_t(ids.size()), Q = H_ * d_, K = G_ * d_;
    const std::vector<double> emb = t("token_embd.weight");
    std::vector<double> x(size_t(n * D_));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < D_; ++c)
        x[size_t(i * D_ + c)] = emb[size_t(ids[size_t(i)] * D_ + c)] *
                                (ra_.embed_scale ? std::sqrt(double(D_)) : 1.0);
    for (int64_t l = 0; l < L_; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      const bool local = window_ > 0 && ra_.swa_period > 0 &&
                         l % ra_.swa_period < ra_.swa_period - 1;
      const auto h = rmsnorm(x, t(p + "attn_norm.weight"), D_);
      std::vector<double> wq, wk, wv;
      if (has(p + "attn_qkv.weight")) {
        const auto all = t(p + "attn_qkv.weight");
        wq.assign(all.begin(), all.begin() + Q * D_);
        wk.assign(all.begin() + Q * D_, all.begin() + (Q + K) * D_);
        wv.assign(all.begin() + (Q + K) * D_, all.end());
      } else {
        wq = t(p + "attn_q.weight"), wk = t(p + "attn_k.weight"), wv = t(p + "attn_v.weight");
      }
      auto q = linear(h, wq, n, D_, Q, opt(p + "attn_q.bias"));
      auto k = linear(h, wk, n, D_, K, opt(p + "attn_k.bias"));
      const auto v = linear(h, wv, n, D_, K, opt(p + "attn_v.bias"));
      if (ra_.qk_norm) {
        q = rmsnorm(q, t(p + "attn_q_norm.weight"), d_);
        k = rmsnorm(k, t(p + "attn_k_norm.weight"), d_);
      }
      const double base = local ? local_base_ : base_;
      const double rscale = local && !ra_.local_base_is_global ? 1.0 : scale_;
      rope(q, n, H_, base, rscale);
      rope(k, n, G_, base, rscale);
      auto att = attention(q, k, v, n, local ? window_ : 0);
      auto o = linear(att, t(p + "attn_output.weight"), n, Q, D_, {});
      if (ra_.post_norms) o = rmsnorm(o, t(p + "post_attention_norm.weight"), D_);
      for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
      const auto h2 = rmsnorm(x, t(p + "ffn_norm.weight"), D_);
      std::vector<double> gate, up;
      if (has(p + "ffn_gate.weight")) {
        gate = linear(h2, t(p + "ffn_gate.weight"), n, D_, F_, {});
        up = linear(h2, t(p + "ffn_up.weight"), n, D_, F_, {});
      } else {  // [2F][D]: gate rows, then up rows
        const auto both = linear(h2, t(p + "ffn_up.weight"), n, D_, 2 * F_, {});
        for (int64_t i = 0; i < n; ++i) {
          gate.insert(gate.end(), both.begin() + i * 2 * F_, both.begin() + i * 2 * F_ + F_);
          up.insert(up.end(), both.begin() + i * 2 * F_ + F_, both.begin() + (i + 1) * 2 * F_);
        }
      }
      for (size_t i = 0; i < gate.size(); ++i) {
        const double g = gate[i];
        const double act =
            ra_.gelu ? 0.5 * g * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g)))
                     : g / (1.0 + std::exp(-g));
        gate[i] = act * up[i];
      }
      auto down = linear(gate, t(p + "ffn_down.weight"), n, F_, D_, {});
      if (ra_.post_norms) down = rmsnorm(down, t(p + "post_ffw_norm.weight"), D_);
      for (size_t i = 0; i < x.size(); ++i) x[i] += down[i];
    }
    const auto hn = rmsnorm(x, t("output_norm.weight"), D_);
    auto out = linear(hn, t(has("output.weight") ? "output.weight" : "token_embd.weight"), n, D_,
                      V_, {});
    if (final_cap_ > 0)
      for (double& z : out) z = final_cap_ * std::tanh(z / final_cap_);
    return out;
  }

 private:
  const gguf::TensorInfo& tensor_info(const std::string& name) const {
    const auto* ti = f_.find_tensor(name);
    if (!ti) throw std::runtime_error("reference: no tensor " + name);
    return *ti;
  }
  bool has(const std::string& name) const { return f_.find_tensor(name) != nullptr; }
  // An F32 tensor's values.
  std::vector<double> t(const std::string& name) const {
    const auto& ti = tensor_info(name);
    if (ti.type != DType::F32) throw std::runtime_error("reference: not f32: " + name);
    std::vector<float> raw(size_t(ti.nelements()));
    std::memcpy(raw.data(), f_.tensor_data(ti), raw.size() * sizeof(float));
    return {raw.begin(), raw.end()};
  }
  std::vector<double> opt(const std::string& name) const {
    return has(name) ? t(name) : std::vector<double>{};
  }

  // y [n][out] = x [n][in] W^T (+ b); W is [out][in].
  static std::vector<double> linear(const std::vector<double>& x, const std::vector<double>& w,
                                    int64_t n, int64_t in, int64_t out,
                                    const std::vector<double>& b) {
    std::vector<double> y(size_t(n * out));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t r = 0; r < out; ++r) {
        double s = b.empty() ? 0.0 : b[size_t(r)];
        for (int64_t c = 0; c < in; ++c) s += x[size_t(i * in + c)] * w[size_t(r * in + c)];
        y[size_t(i * out + r)] = s;
      }
    return y;
  }

  // RMSNorm of every run of `cols` values (a row, or one head of a row).
  std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& w,
                              int64_t cols) const {
    std::vector<double> y(x.size());
    for (size_t r0 = 0; r0 < x.size(); r0 += size_t(cols)) {
      double ss = 0;
      for (int64_t c = 0; c < cols; ++c) ss += x[r0 + size_t(c)] * x[r0 + size_t(c)];
      const double inv = 1.0 / std::sqrt(ss / double(cols) + eps_);
      for (int64_t c = 0; c < cols; ++c) y[r0 + size_t(c)] = x[r0 + size_t(c)] * inv * w[size_t(c)];
    }
    return y;
  }

  void rope(std::vector<double>& x, int64_t n, int64_t heads, double base, double scale) const {
    const int64_t half = n_rot_ / 2;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t h = 0; h < heads; ++h) {
        double* v = x.data() + (i * heads + h) * d_;
        for (int64_t j = 0; j < half; ++j) {
          double theta = double(i) * scale * std::pow(base, -2.0 * double(j) / double(n_rot_));
          if (!freq_factors_.empty()) theta /= freq_factors_[size_t(j)];
          const int64_t a = ra_.neox ? j : 2 * j, b = ra_.neox ? j + half : 2 * j + 1;
          const double x0 = v[a], x1 = v[b];
          v[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
          v[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
        }
      }
  }

  // Causal attention (window > 0: keys at positions (i - window, i] only).
  std::vector<double> attention(const std::vector<double>& q, const std::vector<double>& k,
                                const std::vector<double>& v, int64_t n, int64_t window) const {
    std::vector<double> out(size_t(n * H_ * d_), 0.0);
    const double scale = 1.0 / std::sqrt(double(d_));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t h = 0; h < H_; ++h) {
        const int64_t g = h / (H_ / G_);
        std::vector<double> s(size_t(i + 1), -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          if (window > 0 && i - j >= window) continue;
          double dot = 0;
          for (int64_t c = 0; c < d_; ++c)
            dot += q[size_t((i * H_ + h) * d_ + c)] * k[size_t((j * G_ + g) * d_ + c)];
          dot *= scale;
          if (attn_cap_ > 0) dot = attn_cap_ * std::tanh(dot / attn_cap_);
          s[size_t(j)] = dot;
          mx = std::max(mx, dot);
        }
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t c = 0; c < d_; ++c)
            out[size_t((i * H_ + h) * d_ + c)] += s[size_t(j)] / sum * v[size_t((j * G_ + g) * d_ + c)];
      }
    return out;
  }

  gguf::File f_;
  std::string arch_;
  RefArch ra_;
  int64_t D_ = 0, L_ = 0, H_ = 0, G_ = 0, F_ = 0, d_ = 0, n_rot_ = 0, V_ = 0, window_ = 0;
  double eps_ = 0, base_ = 0, scale_ = 1.0, local_base_ = 0, attn_cap_ = 0, final_cap_ = 0;
  std::vector<double> freq_factors_;
};

}  // namespace tandem::test
