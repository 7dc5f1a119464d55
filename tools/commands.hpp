#pragma once
// Subcommands of the `tandem` program; each add_* registers one on the app.
#include <CLI/CLI.hpp>

namespace tandem::cli {

void add_generate(CLI::App& app);
void add_logits(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_info(CLI::App& app);
void add_make_model(CLI::App& app);
void add_prefill(CLI::App& app);
void add_plan(CLI::App& app);
void add_bench(CLI::App& app);
void add_calibrate(CLI::App& app);
void add_compare(CLI::App& app);
void add_bench_serve(CLI::App& app);
void add_serve(CLI::App& app);
void add_train(CLI::App& app);

// Default thread count: the cores this process may use.
int default_threads();

}  // namespace tandem::cli
