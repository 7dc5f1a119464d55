// tandem tokenize: text to token ids with the tokenizer stored in a GGUF file.
#include <fmt/format.h>

#include <memory>

#include "commands.hpp"
#include "common.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/gguf.hpp"
#include "tandem/model/tokenizer.hpp"

namespace tandem::cli {
namespace {

struct Opts {
  std::string model, prompt, file;
  bool no_bos = false, parse_special = false;
};

void run(const Opts& o) {
  // The text first: a file over the limit is refused before the model is opened.
  const std::string text = o.file.empty() ? o.prompt : read_text_flag(o.file, "--file");
  const auto f = gguf::File::open(o.model);
  const auto tok = Tokenizer::from_gguf(f);
  const auto ids = tok.encode(text, !o.no_bos, o.parse_special);
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  fmt::print("{}\n", line);
}

}  // namespace

void add_tokenize(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("tokenize", "Print the token ids of a text (one line)");
  sub->add_option("-m,--model", o->model, "GGUF model or vocabulary-only file")->required()->check(CLI::ExistingFile);
  auto* p = sub->add_option("-p,--prompt", o->prompt, "Text to tokenize");
  auto* f = sub->add_option("-f,--file", o->file, "File whose content to tokenize")
                ->check(CLI::ExistingFile);
  p->excludes(f);
  sub->add_flag("--no-bos", o->no_bos, "Do not add the BOS token");
  sub->add_flag("--parse-special", o->parse_special,
                "Match control tokens (chat markers such as <|eot_id|>) in the text");
  sub->callback([o, p, f] {
    if (p->count() == 0 && f->count() == 0) bad_input("tokenize: give -p TEXT or -f FILE");
    run(*o);
  });
}

}  // namespace tandem::cli
