// tandem: command-line entry point. Exit codes: 0 ok, 1 internal error, 2 bad input
// (file, flag or value), 3 out of memory/budget, 4 communication failure.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "commands.hpp"
#include "tandem/core/error.hpp"

namespace {
// Model files are memory-mapped: if one is truncated while in use, touching the lost
// pages raises SIGBUS. Report it as the bad input it is instead of crashing.
extern "C" void on_sigbus(int) {
  static const char msg[] =
      "tandem: error: a memory-mapped model file was truncated while in use (SIGBUS); "
      "its data is gone, nothing after this point is valid\n";
  (void)!::write(2, msg, sizeof msg - 1);
  ::_exit(2);
}
}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGBUS, on_sigbus);
  CLI::App app{"tandem: long-context transformer inference, sequential and sequence-parallel"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tandem 0.1.0");
  tandem::cli::add_generate(app);
  tandem::cli::add_logits(app);
  tandem::cli::add_tokenize(app);
  tandem::cli::add_info(app);
  tandem::cli::add_make_model(app);
  tandem::cli::add_prefill(app);
  tandem::cli::add_plan(app);
  tandem::cli::add_bench(app);
  tandem::cli::add_calibrate(app);
  tandem::cli::add_compare(app);
  tandem::cli::add_serve(app);
  tandem::cli::add_train(app);
  tandem::cli::add_bench_serve(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string where = "tandem";
    for (const auto* sub : app.get_subcommands()) where += " " + sub->get_name();
    std::fprintf(stderr, "tandem: error: %s\nRun '%s --help' for usage.\n", e.what(),
                 where.c_str());
    return 2;
  } catch (const tandem::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr, "tandem: error: out of memory\n");
    return 3;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "tandem: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
