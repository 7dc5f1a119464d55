// `tandem serve` under a real mpirun -np 2 --sp zigzag: a prompt longer than one rank's
// --kv-pool is prefilled by both ranks and decoded against the KV cache sharded across
// them, and its greedy continuation equals `tandem generate` on one rank; a short prompt
// is still batched on rank 0 and equals generate too; a prompt longer than both ranks
// hold is a 400 naming the limit; /metrics counts the sequence-parallel work; SIGTERM to
// rank 0 ends every rank and mpirun exits 0.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "support/test_paths.hpp"

using tandem::test::mpirun;
using tandem::test::read_text;
using tandem::test::free_port;
using tandem::test::run;
using tandem::test::shared_path;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {


std::string join(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

// What `tandem generate` prints after the prompt: greedy, one rank.
std::string generated(const std::string& model, const std::vector<int>& ids, int n) {
  const std::string out = temp_dir() + "/mpi-serve-generate.txt";
  const auto r = run(tandem_bin() + " generate -m " + model + " --ids " + join(ids) + " -n " + std::to_string(n) +
                     " --temp 0 -t 1 --no-bos > " + out + " 2>/dev/null");
  EXPECT_EQ(r.code, 0) << r.out;
  // The text, then a newline and the run's figures ("prompt: N tokens in ...").
  std::string text = read_text(out);
  const size_t figures = text.rfind("\nprompt: ");
  return figures == std::string::npos ? text : text.substr(0, figures);
}

}  // namespace

TEST(MpiServe, LongPromptAcrossRanksEqualsOneRank) {
  const std::string dir = temp_dir(), model = dir + "/mpi-serve.gguf";
  // 512 bytes of K and V per token: a 128K pool holds 256 tokens.
  auto r = run(tandem_bin() + " make-model --preset tiny --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 "
                              "--type f32 --vocab " + shared_path("vocab/ggml-vocab-llama-spm.gguf") + " -o " + model);
  ASSERT_EQ(r.code, 0) << r.out;
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> d(3, 31999);
  auto prompt = [&](int n) {
    std::vector<int> ids(static_cast<size_t>(n));
    for (int& id : ids) id = d(rng);
    return ids;
  };
  const std::vector<int> longer = prompt(300), shorter = prompt(20), too_long = prompt(600);

  const int port = free_port();
  const std::string log = dir + "/mpi-serve.log", rc_file = dir + "/mpi-serve.rc";
  const std::string cmd = mpirun(2, 240) + tandem_bin() + " serve -m " + model + " --port " + std::to_string(port) +
                          " -t 1 --parallel 2 --ctx-size 128 --kv-pool 128K --sp zigzag --sp-min-tokens 200";
  // In the background, holding none of run()'s output pipe.
  run("{ " + cmd + " > " + log + " 2>&1; echo $? > " + rc_file + "; } < /dev/null > /dev/null 2>&1 &");
  bool up = false;
  for (int i = 0; i < 600 && !up; ++i) {
    httplib::Client probe("127.0.0.1", port);
    const auto h = probe.Get("/health");
    up = h && h->status == 200;
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(up) << read_text(log);
  // The server prints its lines once it listens: /health can answer first.
  const std::string line = "prefilled by 2 ranks (--sp zigzag)";
  for (int i = 0; i < 100 && read_text(log).find(line) == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_NE(read_text(log).find(line), std::string::npos) << read_text(log);
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120);

  auto complete = [&](const std::vector<int>& ids, int n) {
    const nlohmann::json body = {{"prompt", ids}, {"max_tokens", n}, {"temperature", 0}};
    return c.Post("/v1/completions", body.dump(), "application/json");
  };
  // Longer than one rank's pool (256 tokens), held by two.
  const auto a = complete(longer, 8);
  ASSERT_TRUE(a) << read_text(log);
  ASSERT_EQ(a->status, 200) << a->body;
  const auto ja = nlohmann::json::parse(a->body);
  EXPECT_EQ(ja["usage"]["prompt_tokens"], 300);
  const std::string want_long = generated(model, longer, 8);
  const std::string got_long = ja["choices"][0]["text"].get<std::string>();
  ASSERT_FALSE(got_long.empty());
  EXPECT_TRUE(want_long.size() >= got_long.size() &&
              want_long.compare(want_long.size() - got_long.size(), got_long.size(), got_long) == 0)
      << "server: '" << got_long << "'\ngenerate: '" << want_long << "'";
  // Short: batched on rank 0.
  const auto b = complete(shorter, 8);
  ASSERT_TRUE(b);
  ASSERT_EQ(b->status, 200) << b->body;
  const std::string got_short = nlohmann::json::parse(b->body)["choices"][0]["text"].get<std::string>();
  const std::string want_short = generated(model, shorter, 8);
  EXPECT_TRUE(want_short.size() >= got_short.size() &&
              want_short.compare(want_short.size() - got_short.size(), got_short.size(), got_short) == 0)
      << "server: '" << got_short << "'\ngenerate: '" << want_short << "'";
  // More than both ranks hold.
  const auto e = complete(too_long, 4);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 400) << e->body;
  EXPECT_NE(e->body.find("context_length_exceeded"), std::string::npos) << e->body;
  EXPECT_NE(e->body.find("2 ranks"), std::string::npos) << e->body;
  const auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("tandem_sp_sequences_total 1\n"), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("tandem_sp_prompt_tokens_total 300\n"), std::string::npos) << m->body;

  // SIGTERM to rank 0 (the process whose environment says rank 0, with this port).
  r = run("for p in $(pgrep -f -- 'serve -m " + model + " --port " + std::to_string(port) +
          "'); do tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=0' && "
          "kill -TERM $p && exit 0; done; exit 1");
  ASSERT_EQ(r.code, 0) << "rank 0 not found";
  std::string rc;
  for (int i = 0; i < 300 && rc.empty(); ++i) {
    rc = read_text(rc_file);
    if (rc.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(rc, "0\n") << read_text(log);
  EXPECT_NE(read_text(log).find("stopped"), std::string::npos) << read_text(log);
}
