#include "tandem/train/checkpoint.hpp"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "tandem/core/error.hpp"
#include "tandem/core/text_file.hpp"

namespace tandem::train {
namespace {

namespace fs = std::filesystem;
constexpr char kMagic[8] = {'T', 'D', 'A', 'D', 'A', 'M', '0', '1'};

std::string optimizer_path(const std::string& dir) { return dir + "/optimizer.bin"; }

// A 64-bit hash of a file's bytes (FNV-1a over 8-byte words, the tail byte by byte).
uint64_t file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad_input("{}: cannot be read", path);
  uint64_t h = 0xCBF29CE484222325ull;
  std::vector<char> buf(size_t(1) << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    const size_t got = size_t(in.gcount());
    size_t i = 0;
    for (; i + 8 <= got; i += 8) {
      uint64_t w;
      std::memcpy(&w, buf.data() + i, 8);
      h = (h ^ w) * 0x100000001B3ull;
    }
    for (; i < got; ++i) h = (h ^ uint8_t(buf[i])) * 0x100000001B3ull;
  }
  return h;
}

// Writes bytes to path through path.tmp, flushed, then renamed over path.
void write_atomic(const std::string& path, const std::function<void(std::ofstream&)>& body) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(ErrorKind::BadInput, "{}: cannot be written", tmp);
    body(out);
    out.flush();
    if (!out) fail(ErrorKind::Resource, "{}: write failed (disk full?)", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail(ErrorKind::BadInput, "{}: cannot rename to {}: {}", tmp, path, ec.message());
}

void write_floats(std::ofstream& out, const ParamSet& p) {
  out.write(reinterpret_cast<const char*>(p.data()), std::streamsize(size_t(p.size()) * 4));
}

}  // namespace

std::string checkpoint_model_path(const std::string& dir) { return dir + "/checkpoint.gguf"; }
std::string checkpoint_state_path(const std::string& dir) { return dir + "/state.json"; }

void save_checkpoint(const std::string& dir, const ParamSet& p, const Optimizer& opt,
                     int64_t step, const nlohmann::json& settings) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) bad_input("--out {}: cannot create the folder: {}", dir, ec.message());
  write_atomic(optimizer_path(dir), [&](std::ofstream& out) {
    const uint64_t head[2] = {uint64_t(opt.steps()), uint64_t(p.size())};
    out.write(kMagic, 8);
    out.write(reinterpret_cast<const char*>(head), sizeof head);
    write_floats(out, opt.m);
    write_floats(out, opt.v);
  });
  save_params(p, checkpoint_model_path(dir));
  nlohmann::json st;
  st["step"] = step;
  st["settings"] = settings;
  st["checkpoint_hash"] = fmt::format("{:016x}", file_hash(checkpoint_model_path(dir)));
  st["optimizer_hash"] = fmt::format("{:016x}", file_hash(optimizer_path(dir)));
  write_atomic(checkpoint_state_path(dir), [&](std::ofstream& out) { out << st.dump(2) << "\n"; });
}

CheckpointState read_checkpoint_state(const std::string& dir) {
  const std::string path = checkpoint_state_path(dir);
  if (!fs::exists(path)) bad_input("--resume {}: no {} (not a training folder)", dir, path);
  nlohmann::json st;
  try {
    st = nlohmann::json::parse(read_file_bounded(path, "--resume", kMaxJsonFileBytes));
  } catch (const nlohmann::json::exception& e) {
    bad_input("{}: not valid JSON: {}", path, e.what());
  }
  if (!st.contains("step") || !st["step"].is_number_integer() || !st.contains("settings"))
    bad_input("{}: missing step or settings", path);
  return {st["step"].get<int64_t>(), st["settings"]};
}

void load_checkpoint(const std::string& dir, ParamSet& p, Optimizer& opt) {
  const std::string state_path = checkpoint_state_path(dir);
  const nlohmann::json st =
      nlohmann::json::parse(read_file_bounded(state_path, "--resume", kMaxJsonFileBytes));
  const int64_t step = st.at("step").get<int64_t>();
  for (const auto& [file, key] : {std::pair{checkpoint_model_path(dir), "checkpoint_hash"},
                                  std::pair{optimizer_path(dir), "optimizer_hash"}}) {
    if (!fs::exists(file)) bad_input("--resume {}: {} is missing", dir, file);
    if (fmt::format("{:016x}", file_hash(file)) != st.value(key, std::string()))
      bad_input("--resume {}: {} is not the file of step {} in {} (a write was interrupted); "
                "the weights in checkpoint.gguf still load, but the run cannot resume",
                dir, file, step, state_path);
  }
  load_params(p, checkpoint_model_path(dir));
  std::ifstream in(optimizer_path(dir), std::ios::binary);
  char magic[8];
  uint64_t head[2];
  in.read(magic, 8);
  in.read(reinterpret_cast<char*>(head), sizeof head);
  if (!in || std::memcmp(magic, kMagic, 8) != 0 || head[1] != uint64_t(p.size()))
    bad_input("{}: not an optimizer state of this model", optimizer_path(dir));
  in.read(reinterpret_cast<char*>(opt.m.data()), std::streamsize(size_t(p.size()) * 4));
  in.read(reinterpret_cast<char*>(opt.v.data()), std::streamsize(size_t(p.size()) * 4));
  if (!in) bad_input("{}: truncated", optimizer_path(dir));
  opt.set_steps(int64_t(head[0]));
}

}  // namespace tandem::train
