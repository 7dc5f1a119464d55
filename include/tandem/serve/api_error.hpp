#pragma once
// An error the server answers a request with, in OpenAI's shape:
//   HTTP <http_status>, body {"error": {"message", "type", "param", "code"}}.
// Parsers return these rather than throwing: a client's bad body is an answer, not a failure.
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <variant>

namespace tandem::serve {

struct ApiError {
  int http_status = 400;
  std::string type = "invalid_request_error";  // or "authentication_error", "not_found_error", ...
  std::string message;
  std::string param;  // the field at fault ("temperature", "messages[1].content"); "" for none
  std::string code;   // OpenAI's machine-readable code ("model_not_found"); "" for none
};

// {"error": {"message", "type", "param", "code"}}; an empty param or code is null.
nlohmann::json to_json(const ApiError& e);

// A 400 invalid_request_error naming `param`.
ApiError invalid_request(std::string param, std::string message, std::string code = "");

// Either a value or the ApiError that refused it.
template <typename T>
class Parsed {
 public:
  Parsed(T value) : v_(std::move(value)) {}            // NOLINT: implicit by design
  Parsed(ApiError error) : v_(std::move(error)) {}     // NOLINT
  bool ok() const { return v_.index() == 0; }
  const T& value() const { return std::get<0>(v_); }
  T& value() { return std::get<0>(v_); }
  const ApiError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, ApiError> v_;
};

// Serializes JSON for the wire; invalid UTF-8 in strings (a byte-level token cut mid
// character) becomes U+FFFD instead of an exception.
std::string dump_json(const nlohmann::json& j);

}  // namespace tandem::serve
