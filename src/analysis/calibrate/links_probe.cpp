// tandem calibrate's MPI half: message and all-to-all rates between two ranks by size.
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "tandem/analysis/calibrate.hpp"
#include "tandem/comm/communicator.hpp"
#include "tandem/core/error.hpp"
#include "tandem/core/timer.hpp"

namespace tandem::analysis {

namespace {
// Iterations for a message of `bytes`: about 64 MiB moved, between 4 and 1000.
int iterations(double bytes) { return std::clamp(int((64 << 20) / std::max(bytes, 1.0)), 4, 1000); }
}  // namespace

LinkCurves measure_links(comm::Communicator& c) {
  if (c.size() < 2) bad_input("calibrate links: needs 2 ranks or more, got {}", c.size());
  const std::vector<double> sizes = {8, 1024, 65536, 1 << 20, 16 << 20};
  LinkCurves out;
  out.message = Curve::grid({"bytes"}, {sizes});
  out.alltoall = Curve::grid({"bytes"}, {sizes});
  const int me = c.rank(), peer = 1 - me;
  const bool active = me < 2;
  // The first exchange between the two ranks (and their first all-to-all) sets up the
  // transport's state: done once, untimed, before the steady rates.
  c.barrier();
  if (active) {
    char one = 0, got = 0;
    if (me == 0) {
      c.send(&one, 1, peer, 3);
      c.recv(&got, 1, peer, 4);
    } else {
      c.recv(&got, 1, peer, 3);
      c.send(&one, 1, peer, 4);
    }
  }
  // Two ranks talk; a split keeps the others out of the all-to-alls.
  auto pair = c.split(active ? 0 : comm::Communicator::kNoColor, me);
  if (active) {
    std::vector<char> s1(2 << 20), r1(2 << 20);
    const std::vector<size_t> sz = {1 << 20, 1 << 20}, off = {0, 1 << 20};
    pair->alltoallv(s1.data(), sz, off, r1.data(), sz, off);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    const size_t bytes = size_t(sizes[i]);
    std::vector<char> a(bytes), b(bytes), sa(2 * bytes), ra(2 * bytes);
    const int iters = iterations(sizes[i]);
    auto pingpong = [&](int n) {
      for (int k = 0; k < n; ++k) {
        if (me == 0) {
          c.send(a.data(), bytes, peer, 1);
          c.recv(b.data(), bytes, peer, 2);
        } else {
          c.recv(b.data(), bytes, peer, 1);
          c.send(a.data(), bytes, peer, 2);
        }
      }
    };
    auto exchange = [&](int n) {
      const std::vector<size_t> sz = {bytes, bytes}, off = {0, bytes};
      for (int k = 0; k < n; ++k) pair->alltoallv(sa.data(), sz, off, ra.data(), sz, off);
    };
    if (active) pingpong(2);
    c.barrier();
    double one_way = 0, a2a = 0;
    if (active) {
      const Stopwatch sw;
      pingpong(iters);
      one_way = sw.seconds() / iters / 2;
      exchange(2);
      const Stopwatch sw2;
      exchange(iters);
      a2a = sw2.seconds() / iters;
    }
    c.barrier();
    if (me == 0) {
      if (!(one_way > 0) || !(a2a > 0))
        fail(ErrorKind::Comm, "calibrate links: a {}-byte message took no measurable time", bytes);
      out.message.values[i] = sizes[i] / one_way;
      out.alltoall.values[i] = sizes[i] / a2a;
      if (i == 0) out.latency = one_way;
      if (i + 1 == sizes.size()) out.bandwidth = sizes[i] / one_way;
    }
  }
  return out;
}

nlohmann::json link_curves_to_json(const LinkCurves& l) {
  return {{"message", curve_to_json(l.message)},
          {"alltoall", curve_to_json(l.alltoall)},
          {"latency", l.latency},
          {"bandwidth", l.bandwidth}};
}

LinkCurves link_curves_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("message") || !j.contains("alltoall") ||
      !j.contains("latency") || !j.contains("bandwidth") || !j.at("latency").is_number() ||
      !j.at("bandwidth").is_number())
    bad_input("{}: expected message, alltoall, latency and bandwidth", where);
  LinkCurves l;
  l.message = curve_from_json(j.at("message"), where + ".message");
  l.alltoall = curve_from_json(j.at("alltoall"), where + ".alltoall");
  l.latency = j.at("latency").get<double>();
  l.bandwidth = j.at("bandwidth").get<double>();
  return l;
}

}  // namespace tandem::analysis
