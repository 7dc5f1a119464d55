// `tandem serve` driven by the official `openai` npm client (scripts/setup-openai-client.sh
// installs it into build/node): completions and chat, whole and streamed, equal to what
// `tandem generate` gives greedily; then SIGTERM ends the server with exit status 0.
// Skips, saying why, where Node.js or the package is absent.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/test_paths.hpp"

using tandem::test::run;
using tandem::test::shared_path;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string node_modules() {
  if (const char* e = std::getenv("TANDEM_NODE_MODULES")) return e;
  return (std::filesystem::path(tandem_bin()).parent_path().parent_path() / "node" / "node_modules").string();
}

}  // namespace

TEST(ServeOpenAI, OfficialClientGetsWhatGenerateGives) {
  const std::string modules = node_modules();
  if (run("command -v node").code != 0) GTEST_SKIP() << "node is not installed (scripts/setup-openai-client.sh)";
  if (!std::filesystem::exists(modules + "/openai/package.json"))
    GTEST_SKIP() << "the openai package is not in " << modules << " (run scripts/setup-openai-client.sh build/node)";
  const std::string dir = temp_dir(), model = dir + "/serve-openai.gguf", t = tandem_bin();
  ASSERT_EQ(run(t + " make-model --preset tiny --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --type f32 --vocab " +
                shared_path("vocab/ggml-vocab-llama-spm.gguf") + " -o " + model)
                .code,
            0);
  const std::string prompt = "Once upon a time";
  const int n = 16;
  const std::string gen_out = dir + "/serve-openai-generate.txt";
  const auto gen = run("{ " + t + " generate -m " + model + " -p '" + prompt + "' -n " + std::to_string(n) +
                       " --temp 0 -t 1 > " + gen_out + " 2>/dev/null; }");
  ASSERT_EQ(gen.code, 0) << gen.out;
  const std::string printed = tandem::test::read_text(gen_out);
  ASSERT_EQ(printed.rfind(prompt, 0), 0u) << printed;
  std::string text = printed.substr(prompt.size());
  if (!text.empty() && text.back() == '\n') text.pop_back();

  const int port = free_port();
  const std::string log = dir + "/serve-openai.log", pidfile = dir + "/serve-openai.pid";
  ASSERT_EQ(run(t + " serve -m " + model + " --port " + std::to_string(port) +
                " --api-key sk-tandem-test --name tiny -t 1 > " + log + " 2>&1 & echo $! > " + pidfile)
                .code,
            0);
  std::string pid = tandem::test::read_text(pidfile);
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  bool up = false;
  for (int i = 0; i < 300 && !up; ++i) {
    httplib::Client c("127.0.0.1", port);
    const auto r = c.Get("/health");
    up = r && r->status == 200;
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(up) << tandem::test::read_text(log);
  const nlohmann::json want = {{"model", "tiny"}, {"prompt", prompt}, {"n", n}, {"text", text}};
  const std::string want_file = dir + "/serve-openai-want.json";
  {
    std::FILE* f = std::fopen(want_file.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string j = want.dump();
    std::fwrite(j.data(), 1, j.size(), f);
    std::fclose(f);
  }
  const auto client = run("NODE_PATH=" + modules + " timeout 300 node " + std::string(TANDEM_SOURCE_DIR) +
                          "/tests/serve/openai/client.cjs " + url + " " + want_file + " 2>&1");
  EXPECT_EQ(client.code, 0) << client.out;
  EXPECT_NE(client.out.find("ok"), std::string::npos) << client.out;
  const auto stop = run("kill -TERM " + pid + "; for i in $(seq 100); do kill -0 " + pid +
                        " 2>/dev/null || exit 0; sleep 0.1; done; exit 1");
  EXPECT_EQ(stop.code, 0) << "the server did not exit within 10 s of SIGTERM";
  const std::string out = tandem::test::read_text(log);
  EXPECT_NE(out.find("stopped"), std::string::npos) << out;
}
