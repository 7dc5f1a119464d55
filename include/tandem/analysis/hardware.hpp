#pragma once
// Hardware profiles for the cost model: what one device computes and holds, and the links
// between devices inside a node and across nodes. Units: FLOP/s, bytes/s, bytes, seconds.
// The JSON schema is documented in docs/planner.md.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tandem/analysis/curve.hpp"

namespace tandem::analysis {

struct Link {
  double bandwidth = 0;  // bytes/s, per device and per direction
  double latency = 0;    // seconds per message
};

// Measured rates as curves (`tandem calibrate` measures them on a CPU; the GPU profiles
// carry measured ones). Where a curve is present the planner reads it instead of the
// constants of the profile (flops x efficiency, memory_bandwidth, the links).
// The products of a transformer layer as the runtime runs them: plain, Q/K/V in one call
// with the input's RMSNorm and the rotary embedding of Q and K folded in, gate and up in
// one call with the input's RMSNorm and SwiGLU folded in.
enum class MatKind { Plain, Qkv, GateUp };

// The three kinds of work whose speed a CPU core is probed at (CoreProbe, calibrate.hpp):
// a 256-token f16 product (compute), a 256-query attention call, a one-token f16 product
// (its weights streamed, as decode's are). The cores of a shared host lose speed to
// other tenants' work unevenly across them.
enum class CoreWork { Product, Attention, Stream };
// FLOP/s of the three on one core (0: not known): alone (the other cores idle), and
// `busy`: while every core runs the same work at once. The two part on a shared host: in
// spells of seconds to minutes this project's 2-core VM ran each core at about 0.55 of
// its alone rate whenever both were busy (two vCPUs on one physical core, it seems), as
// two one-thread prefills did, while each alone read fast.
struct CoreRates {
  double product = 0, attention = 0, stream = 0;
  double busy_product = 0, busy_attention = 0, busy_stream = 0;
  double of(CoreWork w, bool busy = false) const {
    return w == CoreWork::Product     ? (busy ? busy_product : product)
           : w == CoreWork::Attention ? (busy ? busy_attention : attention)
                                      : (busy ? busy_stream : stream);
  }
  double& of(CoreWork w, bool busy = false) {
    return w == CoreWork::Product     ? (busy ? busy_product : product)
           : w == CoreWork::Attention ? (busy ? busy_attention : attention)
                                      : (busy ? busy_stream : stream);
  }
};

// Keys of ProfileCurves::shape_matmul and shape_attention: "f16 qkv 864x288" (the weight
// type in calibrate's spelling, the kind, rows x cols of the whole call: Q, K and V rows
// together, gate and up together) and "d48 g1" (head dim, query heads per KV head).
std::string shape_matmul_key(const std::string& dtype, MatKind kind, double rows, double cols);
std::string shape_attention_key(double head_dim, double group);

struct ProfileCurves {
  // FLOP/s of a matrix product y = x W^T (2 FLOPs per weight per token), per weight type:
  // axes among "threads" (threads of the device; CPU profiles), "tokens" (rows of x per
  // call), "rows" and "cols" of W (outputs, inputs) and "elements" (rows x cols).
  std::map<std::string, Curve> matmul;
  // FLOP/s of causal attention (4 d FLOPs per visible query-key pair and query head):
  // axes among "threads", "queries" (query tokens per call), "keys" (keys each query sees,
  // on average), "group" (query heads per KV head) and "heads" (query heads per call).
  Curve attention;
  // The calls of particular model shapes, measured as the runtime runs them (`tandem
  // calibrate --model`), by the keys above: FLOP/s over "threads" and "tokens" (products;
  // 2 FLOPs per weight per token) or over "threads", "queries", "keys" and "heads"
  // (attention, as above). A call of a shape held here reads its own curve instead of
  // the grids above, which do not see a shape's tiling, nor the folded ops.
  std::map<std::string, Curve> shape_matmul, shape_attention;
  // Seconds of fixed cost per op of a forward step (dispatch, thread-pool barrier): axis
  // "threads".
  Curve op_overhead;
  // Bytes/s of streaming reads (decode's weights and cache, elementwise ops): axes
  // "threads" (all threads of the node reading at once) and "bytes" (bytes read per
  // pass: caches serve small ones).
  Curve bandwidth;
  // Bytes/s of one message of axis "bytes" between two ranks (its size over its one-way
  // time), and of an all-to-all among two ranks ("bytes" sent by each), inside a node and
  // across. Rates, not times, so that they hold beyond the largest size measured.
  Curve intra_message, inter_message, intra_alltoall, inter_alltoall;
};

struct HardwareProfile {
  std::string name;
  std::string description;
  // Peak dense FLOP/s of one device per compute type: "bf16", "fp16", "fp8", "f32",
  // "q8_0", "q4_0". A type missing here computes at the bf16 rate (weights dequantized
  // on the fly), or at f32 when bf16 is missing too.
  std::map<std::string, double> flops;
  // Fraction of peak FLOP/s that large matrix products and attention reach in practice
  // (model FLOP utilization). One constant per profile.
  double efficiency = 0.5;
  double memory_bandwidth = 0;    // bytes/s of one device's memory
  // Fraction of memory_bandwidth (of the bandwidth curve, where the profile has one) that
  // the runtime's streaming reads reach; calibrate --model sets it from a decode step.
  double memory_efficiency = 1.0;
  double memory_capacity = 0;     // bytes of one device's memory
  // Bytes per element of activations, the KV cache and the tensors exchanged between
  // devices (2 on GPUs: bf16; 4 for tandem's CPU runtime: f32). Attention runs in bf16
  // when 2, in f32 when 4.
  int activation_bytes = 2;
  int devices_per_node = 1;       // default for --gpus-per-node
  Link intra;                     // between devices of one node
  Link inter;                     // between nodes
  // False for a profile without link figures (the JSON has neither intra_node nor
  // inter_node: `tandem calibrate` leaves them out when it cannot measure MPI). Such a
  // profile plans one device only; make_plan refuses P > 1 with it.
  bool has_links = true;
  // Threads one node gives its devices (CPU profiles: its cores; the ranks on a node
  // share them). 0: a device is a fixed unit (a GPU).
  int threads = 0;
  // CPU profiles of `tandem calibrate` (CoreProbe, calibrate.hpp): the cores of a shared
  // host change speed by the second, so calibrate holds its curves at one core rate per
  // kind of work, `core_rate`: its probes' FLOP/s on a core no other work slows (0: not
  // held; those curves are as timed). Products of more than one token (and op costs)
  // are held at core_rate.product, one-token products at .stream, attention at
  // .attention. `core_rates`: each of the node's `threads` cores' probe rates as a run
  // went (compare probes around each run; empty: every core at the held rates). A
  // device's work of a kind takes the held rate over the rate of the slowest core it
  // and the devices in step with it use, times the curves' time: the cores' busy rates
  // of products and attention where that is more than one core and the probe read them.
  CoreRates core_rate;
  std::vector<CoreRates> core_rates;
  ProfileCurves curves;

  // FLOP/s for a compute type, with the fallbacks above.
  double flops_for(const std::string& dtype) const;
  // The compute type attention runs in ("bf16" or "f32").
  std::string attention_dtype() const { return activation_bytes >= 4 ? "f32" : "bf16"; }
  // Throws Error(BadInput) prefixed by `where` naming the first bad field.
  void validate(const std::string& where) const;
};

// Built-in profiles by name: h100, h200, a100, cpu-this.
std::optional<HardwareProfile> builtin_profile(std::string_view name);
const std::vector<std::string>& builtin_profile_names();

// A built-in name, or else a path to a JSON profile. Throws Error(BadInput) naming
// `flag` (unknown name), the file (unreadable, not JSON) or the field at fault.
HardwareProfile load_profile(const std::string& name_or_path, const std::string& flag = "--hardware");
HardwareProfile profile_from_json(const nlohmann::json& j, const std::string& where);
nlohmann::json profile_to_json(const HardwareProfile& p);
nlohmann::json core_rates_to_json(const CoreRates& r);
// Throws Error(BadInput) naming `field` of `where`.
CoreRates core_rates_from_json(const nlohmann::json& j, const std::string& where, const std::string& field);

}  // namespace tandem::analysis
