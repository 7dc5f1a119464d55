// tandem plan: predicts prefill/decode time, memory and communication of each
// sequence-parallel strategy for a model, a token count and a cluster (docs/planner.md).
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "tandem/analysis/hardware.hpp"
#include "tandem/analysis/planner.hpp"
#include "tandem/core/error.hpp"
#include "tandem/parallel/scheme.hpp"

namespace tandem::cli {
namespace {

constexpr int kMaxDevices = analysis::kMaxPlanDevices;
constexpr int64_t kMaxTokens = analysis::kMaxPlanTokens;

struct Opts {
  std::string model, hardware = "h100", dtype, scheme, sp_chunk;
  int64_t tokens = 0, decode_tokens = 0;
  int gpus = 1, gpus_per_node = 0, threads = 0;
  bool per_node_given = false;  // else the profile's devices per node
  bool json = false;
};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void run(const Opts& o) {
  const auto hw = analysis::load_profile(o.hardware, "--hardware");
  if (o.threads > 0 && hw.threads <= 0)
    bad_input("--threads {}: the profile '{}' describes GPUs (a device is one GPU, no threads); "
              "--threads is for CPU profiles (cpu-this, or a file from `tandem calibrate`)",
              o.threads, hw.name);
  const int per_node = o.per_node_given ? o.gpus_per_node
                                        : std::max(1, std::min(o.gpus, hw.devices_per_node));
  auto req = analysis::plan_request(o.model, hw, o.tokens, o.gpus, per_node, o.decode_tokens, o.dtype);
  req.threads = o.threads;
  // auto, or a number of tokens as the runtime's --sp-chunk takes it.
  if (!o.sp_chunk.empty())
    req.sp_chunk = o.sp_chunk == "auto" ? parallel::kAutoSpChunk
                                        : parse_int_in(o.sp_chunk, "--sp-chunk", 0, 1 << 30);
  // (Named by this command's flag: make_plan's own message names compare's.)
  if (!o.scheme.empty() && o.scheme != "single") parallel::parse_scheme(o.scheme, o.gpus, "--scheme");
  const auto plan = analysis::make_plan(std::move(req), o.scheme);
  if (o.json)
    fmt::print("{}\n", analysis::plan_to_json(plan).dump(2));
  else
    fmt::print("{}", analysis::plan_table(plan));
}

}  // namespace

void add_plan(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand(
      "plan", "Predict prefill/decode time, memory and communication of each strategy");
  sub->add_option("-m,--model", o->model,
                  "GGUF file, or a named shape: " + joined(analysis::names_of_shapes()))
      ->required();
  sub->add_option("-n,--tokens", o->tokens, "Prompt tokens N, 1 to 2^40")
      ->required()
      ->check(int_in(1, kMaxTokens));
  sub->add_option("--gpus", o->gpus, fmt::format("Devices P, 1 to {} (default 1)", kMaxDevices))
      ->check(int_in(1, kMaxDevices));
  auto* per_node = sub->add_option("--gpus-per-node", o->gpus_per_node,
                                   "Devices per node K (default: the profile's, at most --gpus)")
                       ->check(int_in(1, kMaxDevices));
  sub->add_option("--hardware", o->hardware,
                  "Profile: " + joined(analysis::builtin_profile_names()) +
                      ", or a JSON profile file (default h100)");
  sub->add_option("--dtype", o->dtype,
                  "Weight type: " + joined(analysis::weight_dtypes()) +
                      " or auto (default: the GGUF file's type; auto for named shapes)");
  sub->add_option("--decode-tokens", o->decode_tokens,
                  "Tokens generated after the prompt, counted in the ranking, 0 to 2^40 (default 0)")
      ->check(int_in(0, kMaxTokens));
  sub->add_option("--threads", o->threads,
                  "Threads of each device (a rank) on a CPU profile, 1 to 1024 (default: the "
                  "profile's for one device, split evenly between the devices of a node); more "
                  "threads than the node's cores take turns on them")
      ->check(int_in(1, 1024));
  sub->add_option("--scheme", o->scheme,
                  "Predict this one configuration only, spelled as --sp takes it (ring, zigzag, "
                  "ulysses, pass-q, auto, hybrid:UxR) or single (default: every strategy)");
  sub->add_option("--sp-chunk", o->sp_chunk,
                  "Tokens per rank per prefill step, as the runtime's --sp-chunk: a number (0: "
                  "each rank's whole shard in one step, the default here) or auto (the "
                  "runtime's default, as compare runs it)");
  sub->add_flag("--json", o->json, "Print JSON: {best, strategies, ...}");
  sub->callback([o, per_node] {
    o->per_node_given = per_node->count() > 0;
    run(*o);
  });
}

}  // namespace tandem::cli
