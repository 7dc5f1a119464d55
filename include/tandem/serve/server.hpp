#pragma once
// The HTTP side of `tandem serve`: an OpenAI-compatible API on cpp-httplib over the
// continuous-batching Scheduler. POST /v1/completions and /v1/chat/completions (streamed
// as server-sent events or whole), GET /v1/models, /health, /metrics (Prometheus text)
// and / (a chat page). Errors are OpenAI error objects with the HTTP status; a full
// queue answers 503 with Retry-After; a client that leaves mid-stream has its
// sequences cancelled. Under --sp, long prompts go to the sequence-parallel lane.
#include <cstdint>
#include <memory>
#include <string>

namespace tandem {
class Tokenizer;
}

namespace tandem::serve {

class Scheduler;
class SpLane;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;               // 0: any free port (see Server::port())
  std::string api_key;           // "": none; else /v1/* need "Authorization: Bearer KEY"
  std::string model_name = "tandem";  // what /v1/models lists and responses carry
  std::string chat_template;     // family name overriding the file's (chat_template.hpp)
  std::string file_chat_template;  // the GGUF's tokenizer.chat_template ("" when none)
  int64_t ctx_size = 4096;       // prompt + output tokens of one sequence
  // HTTP worker threads (connections served at once; a streamed request holds one for its
  // whole life); 0: the scheduler's parallel + 16.
  int threads = 0;
};

class Server {
 public:
  // tok, sched and sp must outlive the server. With sp (rank 0 of `tandem serve --sp`),
  // prompts it takes (SpLane::takes) or too long for ctx_size run there. Throws
  // Error(BadInput) for an unknown chat template name, Error(Resource) when the address
  // cannot be bound.
  Server(const Tokenizer& tok, Scheduler& sched, const ServerOptions& o, SpLane* sp = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;  // the bound port
  // Serves on a thread of its own until stop().
  void start();
  // Stops accepting connections and waits for the ones in progress (the scheduler's
  // shutdown ends their sequences first). Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::serve
