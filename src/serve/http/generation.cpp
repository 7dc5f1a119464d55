#include "generation.hpp"

#include <random>

#include "tandem/model/tokenizer.hpp"
#include "tandem/serve/scheduler.hpp"
#include "tandem/serve/sp_lane.hpp"

namespace tandem::serve {
namespace {

using std::chrono::milliseconds;

FinishReason reason(Finish f) { return f == Finish::Length ? FinishReason::Length : FinishReason::Stop; }

// The first error among finished choices, as an ApiError (500), if any.
std::optional<ApiError> failure(const Generation& g) {
  for (const auto& s : g.sinks) {
    if (s->finish() == Finish::Error) return ApiError{500, "server_error", s->error(), "", ""};
    if (s->finish() == Finish::Cancelled)
      return ApiError{503, "server_error", "the request was cancelled (the server is stopping)", "", ""};
  }
  return std::nullopt;
}

Usage usage_of(const Generation& g) {
  Usage u;
  for (const auto& s : g.sinks) {
    const SequenceStats st = s->stats();
    u.completion_tokens += int(st.output_tokens);
  }
  u.prompt_tokens = int(g.prompt.size());
  return u;
}

nlohmann::json chunk(const Generation& g, const StreamOptions& so, const Choice& c) {
  return g.endpoint == Endpoint::Chat ? chat_chunk(so, c) : completion_chunk(so, c);
}

}  // namespace

bool Lanes::to_sp(int64_t n) const { return sp && (sp->takes(n) || n >= batch_ctx); }

std::optional<uint64_t> Lanes::submit(bool use_sp, std::vector<int32_t> prompt, const GenParams& p,
                                      std::shared_ptr<SequenceSink> sink) {
  return use_sp ? sp->submit(std::move(prompt), p, std::move(sink))
                : batch.submit(std::move(prompt), p, std::move(sink));
}

void Lanes::cancel(bool use_sp, uint64_t id) { use_sp ? sp->cancel(id) : batch.cancel(id); }

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  if (e.http_status == 503) res.set_header("Retry-After", "1");
  res.set_content(dump_json(to_json(e)), "application/json");
}

std::optional<ApiError> submit(Generation& g, Lanes& lanes, const Tokenizer& tok, Metrics& m) {
  GenParams p;
  p.max_tokens = g.params.max_tokens;
  p.temperature = float(g.params.temperature);
  p.top_p = float(g.params.top_p);
  p.top_k = g.params.top_k;
  p.ignore_eos = g.params.ignore_eos;
  p.top_logprobs = g.top_logprobs;
  const uint64_t seed = g.params.seed ? uint64_t(*g.params.seed) : std::random_device{}();
  for (int i = 0; i < g.params.n; ++i) {
    p.seed = seed + uint64_t(i);
    auto sink = std::make_shared<HttpSink>(tok, g.params.stop, g.top_logprobs, m);
    const auto id = lanes.submit(g.sp, g.prompt, p, sink);
    if (!id) {
      for (uint64_t done : g.ids) lanes.cancel(g.sp, done);
      return ApiError{503, "server_error", "the server is busy: its queue is full, retry later", "", "queue_full"};
    }
    g.sinks.push_back(std::move(sink));
    g.ids.push_back(*id);
  }
  return std::nullopt;
}

void respond_whole(Generation& g, httplib::Response& res) {
  std::vector<Choice> choices(g.sinks.size());
  for (size_t i = 0; i < g.sinks.size(); ++i) {
    std::vector<TokenLogprob> lp;
    while (!g.sinks[i]->take(choices[i].text, lp, milliseconds(200))) {}
    choices[i].index = int(i);
    choices[i].finish = reason(g.sinks[i]->finish());
    if (g.top_logprobs >= 0) choices[i].logprobs = std::move(lp);
  }
  if (auto e = failure(g)) return send_error(res, *e);
  const Usage u = usage_of(g);
  const auto body = g.endpoint == Endpoint::Chat ? chat_response(g.meta, choices, u)
                                                 : completion_response(g.meta, choices, u);
  res.set_content(dump_json(body), "application/json");
}

void respond_stream(const std::shared_ptr<Generation>& g, Lanes& lanes, httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  struct State {
    std::vector<bool> started, ended;
    std::vector<size_t> offset;
    bool closed = false;
  };
  auto st = std::make_shared<State>();
  st->started.assign(g->sinks.size(), false);
  st->ended.assign(g->sinks.size(), false);
  st->offset.assign(g->sinks.size(), 0);
  res.set_chunked_content_provider(
      "text/event-stream",
      [g, st, &lanes](size_t, httplib::DataSink& out) {
        auto leave = [&] {  // the client left: end its sequences within a step
          for (size_t i = 0; i < g->sinks.size(); ++i) {
            g->sinks[i]->abandon();
            lanes.cancel(g->sp, g->ids[i]);
          }
          return false;
        };
        if (!out.is_writable()) return leave();
        StreamOptions so{g->meta, g->params.include_usage};
        std::string events;
        bool all_ended = true;
        for (size_t i = 0; i < g->sinks.size(); ++i) {
          if (st->ended[i]) continue;
          if (g->endpoint == Endpoint::Chat && !st->started[i]) {
            events += sse_event(chat_role_chunk(so, int(i)));
            st->started[i] = true;
          }
          Choice c;
          c.index = int(i);
          std::vector<TokenLogprob> lp;
          const bool done = g->sinks[i]->take(c.text, lp, milliseconds(g->sinks.size() > 1 ? 20 : 200));
          if (!c.text.empty() || !lp.empty()) {
            c.text_offset = st->offset[i];
            st->offset[i] += c.text.size();
            if (g->top_logprobs >= 0) c.logprobs = std::move(lp);
            events += sse_event(chunk(*g, so, c));
          }
          if (done) {
            st->ended[i] = true;
            if (g->sinks[i]->finish() == Finish::Error || g->sinks[i]->finish() == Finish::Cancelled) {
              events += sse_event(to_json(*failure(*g)));
            } else {
              Choice last;
              last.index = int(i);
              last.finish = reason(g->sinks[i]->finish());
              last.text_offset = st->offset[i];
              events += sse_event(chunk(*g, so, last));
            }
          } else {
            all_ended = false;
          }
        }
        if (all_ended) {
          if (g->params.include_usage)
            events += sse_event(usage_chunk(so, g->endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion",
                                            usage_of(*g)));
          events += sse_done();
        }
        if (!events.empty() && !out.write(events.data(), events.size())) return leave();
        if (all_ended) out.done();
        return true;
      },
      [g, &lanes](bool success) {
        if (success) return;
        for (size_t i = 0; i < g->sinks.size(); ++i) {
          g->sinks[i]->abandon();
          lanes.cancel(g->sp, g->ids[i]);
        }
      });
}

}  // namespace tandem::serve
