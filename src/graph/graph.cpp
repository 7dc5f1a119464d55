#include "tandem/graph/graph.hpp"

#include <fmt/format.h>

#include "tandem/core/error.hpp"

namespace tandem::graph {

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::Embed: return "embed";
    case OpKind::RmsNorm: return "rmsnorm";
    case OpKind::MatMul: return "matmul";
    case OpKind::Rope: return "rope";
    case OpKind::Add: return "add";
    case OpKind::SwiGlu: return "swiglu";
    case OpKind::GeGlu: return "geglu";
    case OpKind::SoftCap: return "softcap";
    case OpKind::Attention: return "attention";
  }
  return "?";
}

std::vector<ValueId> Node::outputs() const {
  if (kind != OpKind::MatMul) return {out};
  std::vector<ValueId> v;
  for (const MatSpec& s : mats)
    if (s.out >= 0) v.push_back(s.out);
  return v;
}

ValueId Graph::add_value(std::string name, int64_t rows, int64_t cols) {
  values.push_back({std::move(name), rows, cols, 0, false});
  return ValueId(values.size() - 1);
}

Node& Graph::add_node(OpKind kind, std::string name, std::vector<ValueId> in, ValueId out) {
  Node n;
  n.kind = kind;
  n.name = std::move(name);
  n.in = std::move(in);
  n.out = out;
  nodes.push_back(std::move(n));
  return nodes.back();
}

std::vector<int> Graph::readers(ValueId v) const {
  std::vector<int> r;
  for (size_t i = 0; i < nodes.size(); ++i)
    for (ValueId x : nodes[i].in)
      if (x == v) {
        r.push_back(int(i));
        break;
      }
  return r;
}

void Graph::validate() const {
  std::vector<bool> written(values.size(), false);
  auto check_id = [&](const Node& n, ValueId v) {
    if (v < 0 || size_t(v) >= values.size())
      fail(ErrorKind::Internal, "graph: node {} uses value {} out of range", n.name, v);
  };
  for (const Node& n : nodes) {
    for (ValueId v : n.in) {
      check_id(n, v);
      if (!written[size_t(v)])
        fail(ErrorKind::Internal, "graph: node {} reads {} before it is written", n.name,
             values[size_t(v)].name);
      if (n.kind != OpKind::Attention && values[size_t(v)].row0 > n.row_from)
        fail(ErrorKind::Internal, "graph: node {} reads rows of {} that are not stored", n.name,
             values[size_t(v)].name);
    }
    for (ValueId v : n.outputs()) {
      check_id(n, v);
      if (written[size_t(v)])
        fail(ErrorKind::Internal, "graph: value {} written twice", values[size_t(v)].name);
      written[size_t(v)] = true;
      if (values[size_t(v)].row0 != n.row_from)
        fail(ErrorKind::Internal, "graph: node {} writes rows of {} from {}, stored from {}",
             n.name, values[size_t(v)].name, n.row_from, values[size_t(v)].row0);
    }
    bool rotates = n.kind == OpKind::Rope;
    for (const MatSpec& s : n.mats) rotates |= n.kind == OpKind::MatMul && s.rope;
    if (rotates && (n.rope_id < 0 || size_t(n.rope_id) >= ropes.size()))
      fail(ErrorKind::Internal, "graph: node {} names rope {} of {}", n.name, n.rope_id,
           ropes.size());
    if (n.kind == OpKind::RmsNorm && n.norm_cols != 0 &&
        (n.norm_cols < 0 || values[size_t(n.out)].cols % n.norm_cols != 0))
      fail(ErrorKind::Internal, "graph: node {} normalizes runs of {} of rows of {}", n.name,
           n.norm_cols, values[size_t(n.out)].cols);
    if (n.kind == OpKind::MatMul)
      for (const MatSpec& s : n.mats)
        if (s.out >= 0 && s.w.rows != values[size_t(s.out)].cols)
          fail(ErrorKind::Internal, "graph: node {} writes {} columns into {} of {}", n.name,
               s.w.rows, values[size_t(s.out)].name, values[size_t(s.out)].cols);
  }
}

std::string Graph::dump() const {
  std::string s;
  auto vname = [&](ValueId v) { return v >= 0 ? values[size_t(v)].name : std::string("-"); };
  for (const Node& n : nodes) {
    s += fmt::format("{:<14} {:<9}", n.name, op_name(n.kind));
    if (n.norm_w) s += " +rmsnorm";
    if (n.glu) s += " +swiglu";
    s += " (";
    for (size_t i = 0; i < n.in.size(); ++i) s += (i ? ", " : "") + vname(n.in[i]);
    s += ") -> ";
    const auto outs = n.outputs();
    for (size_t i = 0; i < outs.size(); ++i) {
      s += (i ? ", " : "") + vname(outs[i]);
      if (n.kind == OpKind::MatMul)
        for (const MatSpec& ms : n.mats)
          if (ms.out == outs[i] && ms.rope) s += "+rope";
    }
    if (n.row_from > 0) s += fmt::format(" rows {}..", n.row_from);
    s += "\n";
  }
  return s;
}

}  // namespace tandem::graph
