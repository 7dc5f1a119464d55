#include "serve/fields.hpp"

#include <fmt/format.h>

#include <limits>

namespace tandem::serve::detail {

using nlohmann::json;

Fields::Fields(const json& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

const json* Fields::get(const char* key) const {
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) return nullptr;
  return &*it;
}

void Fields::fail(ApiError e) {
  if (!error_) error_ = std::move(e);
}

void Fields::wrong_type(const std::string& param, const char* expected, const json& got) {
  fail(invalid_request(param,
                       fmt::format("Invalid type for '{}': expected {}, but got {} instead.",
                                   param, expected, got.type_name()),
                       "invalid_type"));
}

void Fields::missing(const char* key) {
  fail(invalid_request(param(key), fmt::format("Missing required parameter: '{}'.", param(key)),
                       "missing_required_parameter"));
}

void Fields::string(const char* key, std::string& out) {
  const json* v = get(key);
  if (failed() || !v) return;
  if (!v->is_string()) return wrong_type(param(key), "a string", *v);
  out = v->get<std::string>();
}

void Fields::boolean(const char* key, bool& out) {
  const json* v = get(key);
  if (failed() || !v) return;
  if (!v->is_boolean()) return wrong_type(param(key), "a boolean", *v);
  out = v->get<bool>();
}

void Fields::number(const char* key, double lo, double hi, double& out, bool lo_open) {
  const json* v = get(key);
  if (failed() || !v) return;
  if (!v->is_number()) return wrong_type(param(key), "a number", *v);
  double x = v->get<double>();
  if (x < lo || x > hi || (lo_open && x == lo)) {
    return fail(invalid_request(
        param(key),
        fmt::format("Invalid '{}': expected a value {} {} and <= {}, but got {} instead.",
                    param(key), lo_open ? ">" : ">=", lo, hi, v->dump()),
        "invalid_value"));
  }
  out = x;
}

void Fields::integer(const char* key, int64_t lo, int64_t hi, int64_t& out) {
  const json* v = get(key);
  if (failed() || !v) return;
  if (!v->is_number_integer()) return wrong_type(param(key), "an integer", *v);
  bool too_big = v->is_number_unsigned() &&
                 v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  int64_t x = too_big ? std::numeric_limits<int64_t>::max() : v->get<int64_t>();
  if (too_big || x < lo || x > hi) {
    return fail(invalid_request(
        param(key),
        fmt::format("Invalid '{}': expected an integer between {} and {}, but got {} instead.",
                    param(key), lo, hi, v->dump()),
        "invalid_value"));
  }
  out = x;
}

void Fields::integer(const char* key, int64_t lo, int64_t hi, int& out) {
  int64_t x = out;
  integer(key, lo, hi, x);
  out = static_cast<int>(x);  // within [lo, hi], which callers keep inside int
}

void Fields::integer(const char* key, int64_t lo, int64_t hi, std::optional<int64_t>& out) {
  if (!get(key)) return;
  int64_t x = 0;
  integer(key, lo, hi, x);
  if (!failed()) out = x;
}

void Fields::strings(const char* key, size_t max_items, std::vector<std::string>& out) {
  const json* v = get(key);
  if (failed() || !v) return;
  std::vector<std::string> items;
  if (v->is_string()) {
    items.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > max_items) {
      return fail(invalid_request(param(key),
                                  fmt::format("Invalid '{}': at most {} items, but got {}.",
                                              param(key), max_items, v->size()),
                                  "invalid_value"));
    }
    for (size_t i = 0; i < v->size(); ++i) {
      const json& s = (*v)[i];
      if (!s.is_string()) return wrong_type(fmt::format("{}[{}]", param(key), i), "a string", s);
      items.push_back(s.get<std::string>());
    }
  } else {
    return wrong_type(param(key), "a string or an array of strings", *v);
  }
  out.clear();
  for (auto& s : items)
    if (!s.empty()) out.push_back(std::move(s));
}

std::optional<json> parse_object(std::string_view body, ApiError& error) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    error = invalid_request("", "We could not parse the JSON body of your request: it is not "
                                "valid JSON.");
    return std::nullopt;
  }
  if (!j.is_object()) {
    error = invalid_request("", fmt::format("The request body must be a JSON object, but got {}.",
                                            j.type_name()));
    return std::nullopt;
  }
  return j;
}

}  // namespace tandem::serve::detail
