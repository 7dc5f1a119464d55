#include "tandem/serve/server.hpp"

#include <sys/socket.h>

#include <chrono>
#include <random>
#include <thread>

#include "chat_page.hpp"
#include "generation.hpp"
#include "metrics.hpp"
#include "tandem/core/error.hpp"
#include "tandem/model/tokenizer.hpp"
#include "tandem/serve/chat_template.hpp"
#include "tandem/serve/scheduler.hpp"
#include "tandem/serve/sp_lane.hpp"

namespace tandem::serve {
namespace {

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}", prefix, rng());
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Server::Impl {
  const Tokenizer& tok;
  Scheduler& sched;
  ServerOptions opt;
  Lanes lanes;
  ChatFamily family;
  Metrics metrics;
  httplib::Server http;
  std::thread thread;
  int port = 0;
  int64_t created = unix_now();
  bool stopped = false;

  Impl(const Tokenizer& t, Scheduler& s, const ServerOptions& o, SpLane* sp)
      : tok(t),
        sched(s),
        opt(o),
        lanes{s, sp, o.ctx_size},
        family(resolve_chat_family(o.file_chat_template.empty() ? std::nullopt
                                                                : std::optional<std::string>(o.file_chat_template),
                                   o.chat_template)) {}

  RequestLimits limits() const { return {int(std::min<int64_t>(opt.ctx_size, 1 << 30)), tok.n_vocab()}; }

  bool authorized(const httplib::Request& req, httplib::Response& res) {
    if (opt.api_key.empty() || req.get_header_value("Authorization") == "Bearer " + opt.api_key) return true;
    send_error(res, {401, "authentication_error", "a valid API key is required (Authorization: Bearer KEY)", "",
                     "invalid_api_key"});
    return false;
  }

  // Prompt ids of a generation; an error when it cannot run in the context. Sets the lane.
  std::optional<ApiError> check_length(Generation& g) const {
    const char* field = g.endpoint == Endpoint::Chat ? "messages" : "prompt";
    const int64_t n = int64_t(g.prompt.size());
    if (n == 0) return invalid_request("prompt", "the prompt is empty");
    g.sp = lanes.to_sp(n);
    if (g.sp) {
      const int64_t most = lanes.sp->max_prompt_tokens();
      if (n > most)
        return invalid_request(field,
                               fmt::format("the prompt has {} tokens; the {} ranks of this server hold {} "
                                           "together (--kv-pool per rank)",
                                           n, lanes.sp->ranks(), most),
                               "context_length_exceeded");
      return std::nullopt;
    }
    if (n >= opt.ctx_size)
      return invalid_request(field,
                             fmt::format("the prompt has {} tokens; this server's context holds {} "
                                         "(prompt and output together)",
                                         n, opt.ctx_size),
                             "context_length_exceeded");
    return std::nullopt;
  }

  void generate(const httplib::Request& req, httplib::Response& res, Endpoint ep) {
    const char* name = ep == Endpoint::Chat ? "chat" : "completions";
    auto g = std::make_shared<Generation>();
    g->endpoint = ep;
    g->meta = {random_id(ep == Endpoint::Chat ? "chatcmpl-" : "cmpl-"), unix_now(), opt.model_name};
    if (ep == Endpoint::Chat) {
      auto p = parse_chat_request(req.body, limits());
      if (!p.ok()) return fail(res, name, p.error());
      g->params = p.value().params;
      g->top_logprobs = p.value().logprobs ? p.value().top_logprobs : -1;
      g->prompt = tok.encode(render_chat(family, p.value().messages), true, true);
    } else {
      auto p = parse_completion_request(req.body, limits());
      if (!p.ok()) return fail(res, name, p.error());
      g->params = p.value().params;
      g->top_logprobs = p.value().logprobs.value_or(-1);
      if (const auto* text = std::get_if<std::string>(&p.value().prompt))
        g->prompt = tok.encode(*text, true);
      else
        g->prompt = std::get<std::vector<int32_t>>(p.value().prompt);
    }
    if (auto e = check_length(*g)) return fail(res, name, *e);
    if (auto e = submit(*g, lanes, tok, metrics)) return fail(res, name, *e);
    metrics.request(name, 200);
    if (g->params.stream)
      respond_stream(g, lanes, res);
    else
      respond_whole(*g, res);
  }

  void fail(httplib::Response& res, const char* endpoint, const ApiError& e) {
    metrics.request(endpoint, e.http_status);
    send_error(res, e);
  }

  void routes() {
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(chat_page_html()), "text/html; charset=utf-8");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.text(sched.stats(), lanes.sp ? std::optional(lanes.sp->stats()) : std::nullopt),
                      "text/plain; version=0.0.4");
    });
    http.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return metrics.request("models", 401);
      metrics.request("models", 200);
      res.set_content(dump_json(models_list({{opt.model_name, created, "tandem"}})), "application/json");
    });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return metrics.request("completions", 401);
      generate(req, res, Endpoint::Completions);
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      if (!authorized(req, res)) return metrics.request("chat", 401);
      generate(req, res, Endpoint::Chat);
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;  // an answer of ours
      const int status = res.status;
      const std::string msg = status == 404 ? "no such endpoint: " + req.method + " " + req.path
                              : status == 413 ? "the request body is too large"
                                              : "the request could not be served";
      send_error(res, {status, status == 404 ? "not_found_error" : "invalid_request_error", msg, "", ""});
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, {500, "server_error", what, "", ""});
    });
  }
};

Server::Server(const Tokenizer& tok, Scheduler& sched, const ServerOptions& o, SpLane* sp)
    : impl_(std::make_unique<Impl>(tok, sched, o, sp)) {
  Impl& s = *impl_;
  const int threads = o.threads > 0 ? o.threads : sched.options().parallel + 16;
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  s.http.set_payload_max_length(16u << 20);
  s.http.set_keep_alive_timeout(30);
  s.routes();
  // The library listens with a backlog of 5: a burst of connections (64 clients at once)
  // overflowed it and some requests failed. The listening socket is caught as it is made
  // and given a deep backlog once bound (listen() again only resizes the queue).
  int listen_fd = -1;
  s.http.set_socket_options([&listen_fd](socket_t fd) {
    httplib::default_socket_options(fd);
    listen_fd = fd;
  });
  s.port = o.port == 0 ? s.http.bind_to_any_port(o.host) : (s.http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (s.port > 0 && listen_fd >= 0) ::listen(listen_fd, SOMAXCONN);
  if (s.port <= 0)
    throw Error(ErrorKind::Resource, fmt::format("tandem serve: cannot listen on {}:{} (in use, or not an address "
                                                 "of this machine)",
                                                 o.host, o.port));
}

Server::~Server() { stop(); }

int Server::port() const { return impl_->port; }

void Server::start() {
  impl_->thread = std::thread([this] { impl_->http.listen_after_bind(); });
  for (int w = 0; w < 5000 && !impl_->http.is_running(); ++w) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void Server::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->http.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace tandem::serve
