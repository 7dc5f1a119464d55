// tandem info: metadata and tensor table of a GGUF file.
#include <fmt/format.h>

#include <memory>

#include "commands.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/hparams.hpp"
#include "tandem/model/model.hpp"

namespace tandem::cli {
namespace {

struct Opts {
  std::string model;
  bool all = false;
};

void run(const Opts& o) {
  const auto f = gguf::File::open(o.model);
  // A full model is validated before anything is printed, so a bad file gives one line.
  std::unique_ptr<Model> model;
  if (f.find("general.architecture") && !f.tensors().empty()) model = Model::load(o.model);
  fmt::print("file: {}\nGGUF version {}, {} bytes, alignment {}, {} metadata keys, {} tensors\n",
             f.path(), f.version(), f.file_size(), f.alignment(), f.metadata().size(),
             f.tensors().size());
  fmt::print("\nmetadata:\n");
  for (const auto& [k, v] : f.metadata())
    fmt::print("  {:<44} {:<7} {}\n", k, gguf::value_type_name(v.type), v.to_string(o.all ? 1u << 30 : 8));
  if (!f.tensors().empty()) {
    fmt::print("\ntensors:\n  {:<32} {:<6} {:<22} {:>12} {:>12}\n", "name", "type", "shape",
               "bytes", "offset");
    uint64_t total = 0;
    int64_t params = 0;
    for (const auto& t : f.tensors()) {
      std::string shape;
      for (size_t i = 0; i < t.ne.size(); ++i) shape += (i ? " x " : "") + std::to_string(t.ne[i]);
      fmt::print("  {:<32} {:<6} {:<22} {:>12} {:>12}\n", t.name, dtype_name(t.type), shape,
                 t.nbytes, t.offset);
      total += t.nbytes;
      params += t.nelements();
    }
    fmt::print("  total: {} parameters, {:.1f} MiB\n", params, double(total) / (1 << 20));
  }
  if (model) {
    const auto& h = model->hparams();
    fmt::print("\nmodel: {} V={} D={} L={} H={} G={} d={} F={} rope_base={} eps={} ctx={}{}\n",
               h.arch, h.n_vocab, h.n_embd, h.n_layer, h.n_head, h.n_head_kv, h.head_dim, h.n_ff,
               h.rope_freq_base, h.rms_eps, h.n_ctx_train, model->output_tied ? " (tied output)" : "");
  }
}

}  // namespace

void add_info(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("info", "Print a GGUF file's metadata and tensor table");
  sub->add_option("-m,--model", o->model, "GGUF file")->required()->check(CLI::ExistingFile);
  sub->add_flag("--all", o->all, "Print arrays in full");
  sub->callback([o] { run(*o); });
}

}  // namespace tandem::cli
