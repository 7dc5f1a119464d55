// `tandem serve` as a process, driven by clients no one here wrote: the official `openai`
// npm client (scripts/setup-openai-client.sh installs it into build/node) - completions and
// chat, whole and streamed, equal to what `tandem generate` gives greedily - and headless
// Chromium loading the chat page, which sends a message and shows the streamed reply.
// SIGTERM then ends the server. Each skips, saying why, where its client is absent.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/test_paths.hpp"

using tandem::test::free_port;
using tandem::test::run;
using tandem::test::shared_path;
using tandem::test::tandem_bin;
using tandem::test::temp_dir;

namespace {


std::string node_modules() {
  if (const char* e = std::getenv("TANDEM_NODE_MODULES")) return e;
  return (std::filesystem::path(tandem_bin()).parent_path().parent_path() / "node" / "node_modules").string();
}

// A small synthetic model with a tokenizer (its continuations differ from prompt to prompt).
std::string make_model(const std::string& path) {
  const auto r = run(tandem_bin() + " make-model --preset tiny --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 "
                                    "--type f32 --vocab " + shared_path("vocab/ggml-vocab-llama-spm.gguf") + " -o " + path);
  EXPECT_EQ(r.code, 0) << r.out;
  return path;
}

// `tandem serve` in the background on a free port; stop() sends SIGTERM and waits.
struct ServeProcess {
  std::string log, pid, url;
  bool up = false;
  ServeProcess(const std::string& model, const std::string& name, const std::string& args) {
    const int port = free_port();
    const std::string dir = temp_dir();
    log = dir + "/" + name + ".log";
    const std::string pidfile = dir + "/" + name + ".pid";
    run(tandem_bin() + " serve -m " + model + " --port " + std::to_string(port) + " " + args + " > " + log +
        " 2>&1 & echo $! > " + pidfile);
    pid = tandem::test::read_text(pidfile);
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    url = "http://127.0.0.1:" + std::to_string(port);
    for (int i = 0; i < 300 && !up; ++i) {
      httplib::Client c("127.0.0.1", port);
      const auto r = c.Get("/health");
      up = r && r->status == 200;
      if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  // True when the process ended within 10 s of SIGTERM, saying it stopped.
  bool stop() {
    const auto r = run("kill -TERM " + pid + "; for i in $(seq 100); do kill -0 " + pid +
                       " 2>/dev/null || exit 0; sleep 0.1; done; kill -KILL " + pid + "; exit 1");
    return r.code == 0 && tandem::test::read_text(log).find("stopped") != std::string::npos;
  }
};

}  // namespace

TEST(ServeOpenAI, OfficialClientGetsWhatGenerateGives) {
  const std::string modules = node_modules();
  if (run("command -v node").code != 0) GTEST_SKIP() << "node is not installed (scripts/setup-openai-client.sh)";
  if (!std::filesystem::exists(modules + "/openai/package.json"))
    GTEST_SKIP() << "the openai package is not in " << modules << " (run scripts/setup-openai-client.sh build/node)";
  const std::string dir = temp_dir(), t = tandem_bin();
  const std::string model = make_model(dir + "/serve-openai.gguf");
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

  ServeProcess server(model, "serve-openai", "--api-key sk-tandem-test --name tiny -t 1 --no-prefix-cache");
  ASSERT_TRUE(server.up) << tandem::test::read_text(server.log);
  const std::string url = server.url;
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
  EXPECT_TRUE(server.stop()) << "no clean stop within 10 s of SIGTERM: " << tandem::test::read_text(server.log);
}

// The chat page in a real browser: ?say= makes the page send the message as a user would
// (the form's submit); the reply streams into the page, and it equals the whole reply the
// API gives for the same conversation.
TEST(ServeChatPage, ChromiumShowsTheStreamedReply) {
  std::string browser;
  for (const char* b : {"chromium", "chromium-browser", "google-chrome"})
    if (browser.empty() && run(std::string("command -v ") + b + " > /dev/null").code == 0) browser = b;
  if (browser.empty()) GTEST_SKIP() << "no Chromium here (Debian: apt-get install chromium)";
  const std::string model = make_model(temp_dir() + "/serve-page.gguf");
  ServeProcess server(model, "serve-page", "-t 1 --no-prefix-cache");
  ASSERT_TRUE(server.up) << tandem::test::read_text(server.log);
  // Chromium's virtual time does not wait for a streamed fetch to end, so on a loaded
  // machine the DOM can be dumped before the reply has arrived: up to three page loads, each
  // a fresh conversation, until one shows a finished reply.
  tandem::test::RunResult page{0, ""};
  for (int attempt = 0; attempt < 3; ++attempt) {
    page = run(browser + " --headless --no-sandbox --disable-gpu --virtual-time-budget=60000 --dump-dom '" +
               server.url + "/?say=Hello%20there&max=12&temp=0' 2>/dev/null");
    ASSERT_EQ(page.code, 0) << page.out;
    if (page.out.find("data-replies=\"1\"") != std::string::npos) break;
  }
  httplib::Client c("127.0.0.1", std::stoi(server.url.substr(server.url.rfind(':') + 1)));
  const auto api = c.Post("/v1/chat/completions",
                          nlohmann::json{{"messages", {{{"role", "user"}, {"content", "Hello there"}}}},
                                         {"max_tokens", 12},
                                         {"temperature", 0}}
                              .dump(),
                          "application/json");
  ASSERT_TRUE(api);
  const std::string reply = nlohmann::json::parse(api->body)["choices"][0]["message"]["content"];
  ASSERT_FALSE(reply.empty());
  std::string shown;  // as the DOM dump writes text
  for (const char ch : reply) shown += ch == '&' ? "&amp;" : ch == '<' ? "&lt;" : ch == '>' ? "&gt;" : std::string(1, ch);
  EXPECT_NE(page.out.find("data-replies=\"1\""), std::string::npos) << page.out;
  EXPECT_NE(page.out.find("<div class=\"assistant\">" + shown + "</div>"), std::string::npos)
      << "the page does not show the reply " << reply << ":\n" << page.out;
  EXPECT_TRUE(server.stop());
}
