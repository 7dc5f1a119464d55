#pragma once
// Internal to the planner: what one device's work costs on a hardware profile. Reads the
// profile's measured curves where it has them (hardware.hpp, ProfileCurves), else its
// constants (peak FLOP/s x efficiency, memory bandwidth, link bandwidth and latency).
//
// A device is what one rank uses: on a CPU profile (threads > 0) its `threads`, with
// `sharers` devices of the node streaming from the node's memory at once; on a GPU
// profile one GPU.
#include <string>
#include <vector>

#include "tandem/analysis/hardware.hpp"

namespace tandem::analysis {

class DeviceTime {
 public:
  // `dtype`: the weight type of the matrix products (planner spelling); `attn_dtype`: the
  // type attention runs in; `threads` per device (0 on GPU profiles); `sharers`: devices
  // of one node that stream from its memory at the same time (>= 1).
  DeviceTime(const HardwareProfile& hw, const std::string& dtype, const std::string& attn_dtype,
             int threads, int sharers);

  // y = x W^T for `tokens` rows of x and W of rows x cols, whose weights take
  // `weight_bytes` (read from memory at least once per call).
  // A call of a shape the profile holds (shape_matmul, by kind) reads its own curve.
  double matmul(double tokens, double rows, double cols, double weight_bytes,
                MatKind kind = MatKind::Plain) const;
  // Attention of `triples` visible (query, key, query head) triples at head dim d: calls
  // of `queries` query tokens whose queries see `keys` keys on average, `group` query
  // heads per KV head, `heads` query heads per call, reading `kv_bytes` of K and V.
  // On a CPU profile, a call of more than one query reads the curve (timed with the node
  // to itself) at its keys times the node's devices running at once: each holds K and V
  // of its own, and theirs share the last-level cache, so a call whose K and V fit it
  // alone can spill beside its sharers' (measured: two one-thread processes, each
  // attending 512 queries over 16384 keys of 2 heads, 12.6 MB of K and V, ran at 35-41
  // GFLOP/s side by side and 48-70 alone; of 1 head, 85 side by side).
  double attention(double triples, double d, double queries, double keys, double group,
                   double heads, double kv_bytes) const;
  // Streaming `bytes` (elementwise ops, a cache read) once.
  double stream(double bytes) const;
  // Streaming `bytes` once while each of the node's `sharers` devices streams a set of
  // its own as large: the node's rate at their whole working set, split between them.
  // (A decode step's weights and cache: a set that fits the last-level cache alone can
  // outgrow it beside its sharers'.)
  double stream_own(double bytes) const;
  // The fixed costs of `ops` ops of a forward step.
  double ops(double n) const;
  // One message of `bytes` between two devices (inside a node, or across nodes).
  double message(double bytes, const Link& link, bool inter) const;
  // An all-to-all in which every device sends `bytes` in all to n - 1 peers.
  double alltoall(double bytes, int n, const Link& link, bool inter) const;
  // A phase the node's devices run side by side up to a barrier, each taking `seconds`
  // as priced (turns on shared cores included): where they take turns on the cores, one
  // that finishes early leaves them to the rest (its wait naps: comm/mpi_request.cpp),
  // so the phase ends when the node's cores have done all of it, not at the slowest
  // device's turns. Without turns, the slowest device's time.
  double side_by_side(std::vector<double> seconds) const;

  bool has_curves() const { return matmul_ != nullptr; }
  int threads() const { return threads_; }

 private:
  double bandwidth(double bytes) const;  // this device's share when `sharers` stream

  const HardwareProfile& hw_;
  std::string dtype_;
  const Curve* matmul_ = nullptr;
  double lin_rate_, attn_rate_;
  int threads_, sharers_;
  // Of its products (of more than one token) and ops, its attention, and its one-token
  // products, against the curves (slower cores, or cores shared).
  double slowdown_, attn_slowdown_, stream_slowdown_;
  int turns_;       // turns the node's threads take on its cores (1: a core each, or a GPU)
  int co_running_;  // the node's devices running at once (1 on a GPU profile)
};

}  // namespace tandem::analysis
