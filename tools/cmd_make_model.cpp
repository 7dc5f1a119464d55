// tandem make-model: writes a synthetic model of any supported architecture with
// reproducible random weights (the generator of shared/models/README.md).
#include <fmt/format.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/size.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/quant_recipe.hpp"
#include "tandem/model/hparams.hpp"
#include "tandem/model/synth.hpp"

namespace tandem::cli {
namespace {

struct Opts {
  std::string preset, type, recipe, vocab, out, arch = "llama", rope_scaling;
  int64_t vocab_size = 0;
  uint64_t seed = 1234;
  int64_t dim = 0, layers = 0, heads = 0, kv_heads = 0, ff = 0, ctx = 0, head_dim = 0, window = 0;
  float rope_base = 0.0f;
  bool qkv_bias = false, tied_output = false;
  // Set when the flag was given (it then overrides the preset).
  CLI::Option *o_arch = nullptr, *o_dim = nullptr, *o_layers = nullptr, *o_heads = nullptr,
              *o_kv_heads = nullptr, *o_ff = nullptr, *o_ctx = nullptr, *o_rope = nullptr;
};

bool given(const CLI::Option* o) { return o && o->count() > 0; }

// The shape limits of the model loader (README, "Limits checked on input").
void positive(const char* flag, int64_t v, int64_t hi) {
  if (v <= 0) bad_input("{} must be a positive number (got {})", flag, v);
  if (v > hi) bad_input("{} {} is over the limit of {}", flag, v, hi);
}

SynthSpec make_spec(const Opts& o) {
  SynthSpec s = synth_preset(o.preset.empty() ? "tiny" : o.preset);
  if (given(o.o_arch)) s.arch = o.arch;
  if (given(o.o_dim)) positive("--dim", s.n_embd = o.dim, int64_t{1} << 20);
  if (given(o.o_layers)) positive("--layers", s.n_layer = o.layers, 4096);
  if (given(o.o_heads)) positive("--heads", s.n_head = o.heads, 4096);
  if (given(o.o_kv_heads)) positive("--kv-heads", s.n_head_kv = o.kv_heads, 4096);
  if (given(o.o_ff)) positive("--ff", s.n_ff = o.ff, int64_t{1} << 20);
  if (given(o.o_ctx)) positive("--ctx", s.n_ctx = o.ctx, int64_t{1} << 26);
  if (given(o.o_rope)) {
    if (!(o.rope_base > 0.0f) || !std::isfinite(o.rope_base))
      bad_input("--rope-base must be a positive number (got {})", o.rope_base);
    s.rope_freq_base = o.rope_base;
  }
  // Names a shape value in a message, saying when it came from the preset.
  const std::string preset = o.preset.empty() ? "tiny" : o.preset;
  auto val = [&](const CLI::Option* opt, const char* flag, int64_t v) {
    return given(opt) ? fmt::format("{} {}", flag, v)
                      : fmt::format("{} {} (the {} preset's value)", flag, v, preset);
  };
  if (o.head_dim != 0) positive("--head-dim", s.head_dim = o.head_dim, 4096);
  if (o.window != 0) positive("--window", s.sliding_window = o.window, int64_t{1} << 30);
  if (!o.rope_scaling.empty()) {
    if (o.rope_scaling != "llama3" && o.rope_scaling.rfind("linear:", 0) != 0)
      bad_input("--rope-scaling '{}' is not one of llama3, linear:F", o.rope_scaling);
    s.rope_scaling = o.rope_scaling;
  }
  const int64_t head_dim = s.head_dim > 0 ? s.head_dim : s.n_embd / s.n_head;
  if (s.n_embd % s.n_head != 0 && s.head_dim == 0)
    bad_input("{} does not divide {} (or give --head-dim)", val(o.o_heads, "--heads", s.n_head),
              val(o.o_dim, "--dim", s.n_embd));
  if (s.n_head_kv > s.n_head || s.n_head % s.n_head_kv != 0)
    bad_input("{} does not divide {}", val(o.o_kv_heads, "--kv-heads", s.n_head_kv),
              val(o.o_heads, "--heads", s.n_head));
  if (head_dim % 2 != 0)
    bad_input("the head dimension {} ({}) must be even (it holds rotary pairs)", head_dim,
              s.head_dim > 0 ? "--head-dim" : "--dim / --heads");
  if (!o.recipe.empty()) {
    const auto r = find_quant_recipe(o.recipe);
    if (!r) bad_input("--recipe '{}' is not one of {}", o.recipe, quant_recipe_names());
    s.recipe = r->name;  // rows its types' blocks do not divide fall back per tensor
    s.type = r->base;
  } else if (const auto t = parse_dtype(o.type); !t || !info(*t).matrix) {
    bad_input("--type '{}' is not one of {}", o.type, matrix_type_names());
  } else {
    s.type = *t;
  }
  if (o.recipe.empty() && info(s.type).block_size > 1) {
    const int b = info(s.type).block_size;
    if (s.n_embd % b != 0) bad_input("--type {} needs --dim to be a multiple of {}", o.type, b);
    if (s.n_ff % b != 0) bad_input("--type {} needs --ff to be a multiple of {}", o.type, b);
  }
  if (!o.vocab.empty()) {
    s.vocab_path = o.vocab;
  } else {
    positive("--vocab-size", o.vocab_size, int64_t{1} << 24);
    s.n_vocab = o.vocab_size;
  }
  s.seed = o.seed;
  s.qkv_bias = o.qkv_bias;
  s.tied_output = o.tied_output;
  return s;
}

// Fails early (before generating anything) when the output cannot be written.
void check_output(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (p.filename().empty()) bad_input("-o {}: not a file name", path);
  if (fs::is_directory(p, ec)) bad_input("-o {}: is a directory", path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec)) bad_input("-o {}: directory {} does not exist", path, dir.string());
  if (access(dir.c_str(), W_OK) != 0) bad_input("-o {}: directory {} is not writable", path, dir.string());
}

// Each shape flag is within the loader's limits, but together they can ask for far more
// than the machine has: the generator holds every tensor in memory until the file is
// written. Refuses, before anything is generated, a model that would not fit in memory
// or on the output's file system.
void check_footprint(const SynthSpec& spec, const std::string& out) {
  const SynthFootprint f = synthetic_model_footprint(spec);
  const char* flags = "--dim, --ff, --layers, --vocab/--vocab-size and --type";
  const double phys = double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGE_SIZE));
  if (phys > 0 && double(f.peak_bytes) > phys)
    bad_input("{}: this model needs {} of memory to generate ({} of tensors), more than this "
              "machine's {}", flags, format_size(double(f.peak_bytes)),
              format_size(double(f.file_bytes)), format_size(phys));
  const std::filesystem::path p(out);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) == 0) {
    const double avail = double(vfs.f_bavail) * double(vfs.f_frsize);
    if (double(f.file_bytes) > avail)
      bad_input("-o {}: the model takes {}, but {} has {} free", out,
                format_size(double(f.file_bytes)), dir, format_size(avail));
  }
}

void run(const Opts& o) {
  const SynthSpec spec = make_spec(o);
  check_output(o.out);
  check_footprint(spec, o.out);
  // On a terminal the progress line is rewritten in place; elsewhere (logs) it is
  // printed about every tenth of the tensors.
  const bool tty = isatty(fileno(stderr)) != 0;
  write_synthetic_model(spec, o.out, [tty](int done, int total) {
    if (tty) {
      fmt::print(stderr, "\rwriting tensor {}/{}", done, total);
      if (done == total) fmt::print(stderr, "\n");
    } else if (done == total || (done * 10 / total) != ((done - 1) * 10 / total)) {
      fmt::print(stderr, "writing tensor {}/{}\n", done, total);
    }
    std::fflush(stderr);
  });
  const auto f = gguf::File::open(o.out);
  int64_t params = 0;
  for (const auto& t : f.tensors()) params += t.nelements();
  fmt::print("wrote {}: {} bytes ({:.1f} MiB), {} parameters ({:.1f}M), {} tensors, {}\n", o.out,
             f.file_size(), double(f.file_size()) / (1 << 20), params, double(params) / 1e6,
             f.tensors().size(), spec.recipe.empty() ? dtype_name(spec.type) : spec.recipe);
}

}  // namespace

void add_make_model(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand(
      "make-model", "Write a synthetic model with reproducible random weights (N(0, 0.02^2))");
  sub->add_option("--preset", o->preset, "Shape preset: tiny or small (default shape: tiny)")
      ->check(CLI::IsMember({"tiny", "small"}));
  auto* type = sub->add_option("--type", o->type,
                                "Matrix type: " + matrix_type_names() +
                                    " (every matrix that type, norms f32)");
  auto* recipe = sub->add_option("--recipe", o->recipe,
                                  "Quantization mix: " + quant_recipe_names() +
                                      " (the type of each tensor by its role and layer, as "
                                      "GGUF quantizers pick them without an importance matrix)");
  type->excludes(recipe);
  auto* vocab = sub->add_option("--vocab", o->vocab,
                                "GGUF file whose tokenizer.* metadata is copied (sets V)")
                   ->check(CLI::ExistingFile);
  auto* vsize = sub->add_option("--vocab-size", o->vocab_size, "Vocabulary size V, no tokenizer");
  vocab->excludes(vsize);
  sub->add_option("--seed", o->seed, "Generator seed, 0 to 2^64-1 (default 1234)")
      ->check(CLI::Validator(
          [](std::string& v) {
            uint64_t x = 0;
            const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
            return ec != std::errc() || end != v.data() + v.size()
                       ? std::string("must be an integer from 0 to 2^64-1")
                       : std::string();
          },
          "UINT64"));
  sub->add_option("-o,--output", o->out, "Output GGUF file")->required();
  o->o_arch = sub->add_option("--arch", o->arch, "Architecture: " + supported_arch_names())
                  ->check(CLI::Validator(
                      [](std::string& v) {
                        return supported_arch(v) ? std::string()
                                                 : "'" + v + "' is not one of " +
                                                       supported_arch_names();
                      },
                      "ARCH"));
  o->o_dim = sub->add_option("--dim", o->dim, "Embedding length D");
  o->o_layers = sub->add_option("--layers", o->layers, "Layer count L");
  o->o_heads = sub->add_option("--heads", o->heads, "Query heads H");
  o->o_kv_heads = sub->add_option("--kv-heads", o->kv_heads, "KV heads G (divides H)");
  o->o_ff = sub->add_option("--ff", o->ff, "Feed-forward length F");
  o->o_ctx = sub->add_option("--ctx", o->ctx, "Context length (metadata)");
  o->o_rope = sub->add_option("--rope-base", o->rope_base, "RoPE frequency base");
  sub->add_option("--rope-scaling", o->rope_scaling,
                  "RoPE scaling: llama3 (a rope_freqs tensor of Llama 3.1's recipe: factor 8, "
                  "low/high frequency factors 1 and 4, original context 8192) or linear:F "
                  "(rope.scaling.type linear, factor F)");
  sub->add_option("--head-dim", o->head_dim,
                  "Head dimension d, written as attention.key_length (default D/H)");
  sub->add_option("--window", o->window,
                  "Sliding window of the local layers (gemma2, gemma3; default 4096, 1024)");
  sub->add_flag("--qkv-bias", o->qkv_bias, "Add Q/K/V bias vectors (qwen2-style)");
  sub->add_flag("--tied-output", o->tied_output, "Omit output.weight (tied to token_embd)");
  sub->callback([o, type, recipe] {
    if (type->count() == 0 && recipe->count() == 0)
      bad_input("one of --type TYPE or --recipe MIX is required (see --help)");
    if (o->vocab.empty() && o->vocab_size == 0)
      bad_input("one of --vocab FILE or --vocab-size N is required (see --help)");
    run(*o);
  });
}

}  // namespace tandem::cli
