#pragma once
// Reading the known fields of a request object with OpenAI's validation. Errors are sticky:
// the first one is kept and later reads do nothing, so a parser reads every field and then
// asks error() once. Absent fields and null leave the output as it was.
#include <tandem/serve/api_error.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tandem::serve::detail {

class Fields {
 public:
  // `prefix` names the object in params ("stream_options." for its fields; "" at the top).
  Fields(const nlohmann::json& obj, std::string prefix = "");

  // The value of `key`, null when absent or null.
  const nlohmann::json* get(const char* key) const;
  std::string param(const char* key) const { return prefix_ + key; }

  void string(const char* key, std::string& out);
  void boolean(const char* key, bool& out);
  // A JSON number in [lo, hi] (lo excluded when lo_open).
  void number(const char* key, double lo, double hi, double& out, bool lo_open = false);
  // A JSON integer in [lo, hi].
  void integer(const char* key, int64_t lo, int64_t hi, int64_t& out);
  void integer(const char* key, int64_t lo, int64_t hi, int& out);
  void integer(const char* key, int64_t lo, int64_t hi, std::optional<int64_t>& out);
  // A string or an array of strings of at most max_items.
  void strings(const char* key, size_t max_items, std::vector<std::string>& out);

  // Records an error unless one is already kept.
  void fail(ApiError e);
  void wrong_type(const std::string& param, const char* expected, const nlohmann::json& got);
  void missing(const char* key);
  bool failed() const { return error_.has_value(); }
  const ApiError& error() const { return *error_; }

 private:
  const nlohmann::json& obj_;
  std::string prefix_;
  std::optional<ApiError> error_;
};

// Parses a body that must be a JSON object; nullopt and an error when it is not.
std::optional<nlohmann::json> parse_object(std::string_view body, ApiError& error);

}  // namespace tandem::serve::detail
