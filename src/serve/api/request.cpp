// POST /v1/completions and /v1/chat/completions bodies.
#include <tandem/serve/request.hpp>

#include <fmt/format.h>

#include <limits>

#include "serve/fields.hpp"

namespace tandem::serve {

using detail::Fields;
using nlohmann::json;

namespace {

constexpr int kMaxStops = 4;
constexpr int kMaxChoices = 16;

// The fields both endpoints share. `max_tokens_key` is read after "max_tokens" and wins
// (chat's max_completion_tokens).
void read_sampling(Fields& f, const RequestLimits& limits,
                   const char* max_tokens_key, SamplingParams& p) {
  int64_t limit = std::max(1, limits.max_tokens);
  f.integer("max_tokens", 1, limit, p.max_tokens);
  if (max_tokens_key) f.integer(max_tokens_key, 1, limit, p.max_tokens);
  f.number("temperature", 0.0, 2.0, p.temperature);
  f.number("top_p", 0.0, 1.0, p.top_p, /*lo_open=*/true);
  f.integer("top_k", -1, std::numeric_limits<int>::max(), p.top_k);
  f.boolean("ignore_eos", p.ignore_eos);
  if (p.top_k < 0) p.top_k = 0;
  f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
            p.seed);
  f.strings("stop", kMaxStops, p.stop);
  f.integer("n", 1, kMaxChoices, p.n);
  f.boolean("stream", p.stream);
  f.number("presence_penalty", -2.0, 2.0, p.presence_penalty);
  f.number("frequency_penalty", -2.0, 2.0, p.frequency_penalty);
  std::string user;
  f.string("user", user);  // read for its type only
  if (const json* so = f.get("stream_options"); so && !f.failed()) {
    if (!so->is_object()) return f.wrong_type("stream_options", "an object", *so);
    if (!p.stream) {
      return f.fail(invalid_request(
          "stream_options", "The 'stream_options' parameter is only allowed when 'stream' is "
                            "enabled."));
    }
    Fields inner(*so, "stream_options.");
    inner.boolean("include_usage", p.include_usage);
    if (inner.failed()) f.fail(inner.error());
  }
}

// A token id array; false (and the error recorded) when an item is not a valid id.
bool read_tokens(Fields& f, const json& arr, const std::string& param, const RequestLimits& lim,
                 std::vector<int32_t>& out) {
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& t = arr[i];
    std::string p = fmt::format("{}[{}]", param, i);
    if (!t.is_number_integer()) {
      f.wrong_type(p, "an integer token id", t);
      return false;
    }
    int64_t hi = lim.vocab_size > 0 ? lim.vocab_size - 1 : std::numeric_limits<int32_t>::max();
    bool neg = t.is_number_integer() && !t.is_number_unsigned() && t.get<int64_t>() < 0;
    if (neg || t.get<uint64_t>() > static_cast<uint64_t>(hi)) {
      f.fail(invalid_request(p, fmt::format("Invalid '{}': token id {} is not in [0, {}].", p,
                                            t.dump(), hi),
                             "invalid_value"));
      return false;
    }
    out.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return true;
}

void read_prompt(Fields& f, const RequestLimits& lim, Prompt& prompt) {
  const json* v = f.get("prompt");
  if (f.failed()) return;
  if (!v) return f.missing("prompt");
  if (v->is_string()) {
    prompt = v->get<std::string>();
    return;
  }
  if (!v->is_array()) return f.wrong_type("prompt", "a string or an array", *v);
  if (v->empty()) return f.fail(invalid_request("prompt", "Invalid 'prompt': it is empty."));
  const json& first = (*v)[0];
  if (first.is_string() || first.is_array()) {  // a batch of prompts: one is supported
    if (v->size() > 1) {
      return f.fail(invalid_request(
          "prompt", fmt::format("Invalid 'prompt': one prompt per request is supported, but "
                                "got {}.", v->size())));
    }
    if (first.is_string()) {
      prompt = first.get<std::string>();
      return;
    }
    if (first.empty()) return f.fail(invalid_request("prompt", "Invalid 'prompt[0]': empty."));
    std::vector<int32_t> ids;
    if (read_tokens(f, first, "prompt[0]", lim, ids)) prompt = std::move(ids);
    return;
  }
  std::vector<int32_t> ids;
  if (read_tokens(f, *v, "prompt", lim, ids)) prompt = std::move(ids);
}

// Message content: a string, or an array of {"type": "text", "text": ...} parts, joined.
void read_content(Fields& f, const json& msg, const std::string& param, std::string& out) {
  auto it = msg.find("content");
  if (it == msg.end() || it->is_null()) {
    return f.fail(invalid_request(param, fmt::format("Missing required parameter: '{}'.", param),
                                  "missing_required_parameter"));
  }
  if (it->is_string()) {
    out = it->get<std::string>();
    return;
  }
  if (!it->is_array()) return f.wrong_type(param, "a string or an array of parts", *it);
  for (size_t j = 0; j < it->size(); ++j) {
    const json& part = (*it)[j];
    std::string pp = fmt::format("{}[{}]", param, j);
    if (!part.is_object()) return f.wrong_type(pp, "an object", part);
    auto type = part.find("type");
    if (type == part.end() || !type->is_string() || *type != "text") {
      return f.fail(invalid_request(pp + ".type", fmt::format(
          "Invalid '{}.type': only text parts (\"type\": \"text\") are supported.", pp)));
    }
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) {
      return f.wrong_type(pp + ".text", "a string", text == part.end() ? json() : *text);
    }
    out += text->get<std::string>();
  }
}

void read_messages(Fields& f, std::vector<ChatMessage>& out) {
  const json* v = f.get("messages");
  if (f.failed()) return;
  if (!v) return f.missing("messages");
  if (!v->is_array()) return f.wrong_type("messages", "an array", *v);
  if (v->empty()) return f.fail(invalid_request("messages", "Invalid 'messages': it is empty."));
  for (size_t i = 0; i < v->size() && !f.failed(); ++i) {
    const json& m = (*v)[i];
    std::string p = fmt::format("messages[{}]", i);
    if (!m.is_object()) return f.wrong_type(p, "an object", m);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return f.wrong_type(p + ".role", "a string", role == m.end() ? json() : *role);
    }
    ChatMessage msg{role->get<std::string>(), ""};
    if (msg.role == "developer") msg.role = "system";
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant") {
      return f.fail(invalid_request(p + ".role", fmt::format(
          "Invalid '{}.role': expected one of system, developer, user, assistant.", p)));
    }
    read_content(f, m, p + ".content", msg.content);
    out.push_back(std::move(msg));
  }
}

template <typename T, typename Body>
Parsed<T> parse_with(std::string_view text, Body&& read) {
  try {
    ApiError err;
    auto body = detail::parse_object(text, err);
    if (!body) return err;
    Fields f(*body);
    T req;
    read(f, req);
    if (f.failed()) return f.error();
    return req;
  } catch (const std::exception& e) {  // a bug, not the client's fault: still an answer
    return ApiError{500, "server_error", fmt::format("Internal error: {}", e.what()), "", ""};
  }
}

}  // namespace

Parsed<CompletionRequest> parse_completion_request(std::string_view body,
                                                   const RequestLimits& limits) {
  return parse_with<CompletionRequest>(body, [&](Fields& f, CompletionRequest& r) {
    f.string("model", r.model);
    read_prompt(f, limits, r.prompt);
    r.params.max_tokens = std::min(16, std::max(1, limits.max_tokens));
    read_sampling(f, limits, nullptr, r.params);
    std::optional<int64_t> logprobs;
    f.integer("logprobs", 0, 5, logprobs);
    if (logprobs) r.logprobs = static_cast<int>(*logprobs);
    f.boolean("echo", r.echo);
  });
}

Parsed<ChatRequest> parse_chat_request(std::string_view body, const RequestLimits& limits) {
  return parse_with<ChatRequest>(body, [&](Fields& f, ChatRequest& r) {
    f.string("model", r.model);
    read_messages(f, r.messages);
    r.params.max_tokens = std::max(1, limits.max_tokens);
    read_sampling(f, limits, "max_completion_tokens", r.params);
    f.boolean("logprobs", r.logprobs);
    f.integer("top_logprobs", 0, 20, r.top_logprobs);
    if (!f.failed() && f.get("top_logprobs") && !r.logprobs) {
      f.fail(invalid_request("top_logprobs",
                             "Invalid 'top_logprobs': 'logprobs' must be true to use it."));
    }
  });
}

}  // namespace tandem::serve
