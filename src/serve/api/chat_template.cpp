// Chat families: detection by marker substrings and rendering. The markers and turn formats
// follow what llama.cpp's built-in templates produce for the same families.
#include <tandem/serve/chat_template.hpp>

#include <tandem/core/error.hpp>

#include <array>
#include <utility>

namespace tandem::serve {

namespace {

constexpr std::array<std::pair<ChatFamily, std::string_view>, 7> kNames{{
    {ChatFamily::ChatML, "chatml"},
    {ChatFamily::Llama2, "llama2"},
    {ChatFamily::Llama3, "llama3"},
    {ChatFamily::Mistral, "mistral"},
    {ChatFamily::MistralV7, "mistral-v7"},
    {ChatFamily::Phi3, "phi3"},
    {ChatFamily::Gemma, "gemma"},
}};

std::string trim(std::string_view s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

// <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n
void render_chatml(const std::vector<ChatMessage>& ms, std::string& out) {
  for (const auto& m : ms) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  out += "<|im_start|>assistant\n";
}

// <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> ... (contents trimmed)
void render_llama3(const std::vector<ChatMessage>& ms, std::string& out) {
  for (const auto& m : ms) {
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) +
           "<|eot_id|>";
  }
  out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
}

// <|role|>\ncontent<|end|>\n ... <|assistant|>\n
void render_phi3(const std::vector<ChatMessage>& ms, std::string& out) {
  for (const auto& m : ms) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
  out += "<|assistant|>\n";
}

// <start_of_turn>user\n[system\n\n]content<end_of_turn>\n, assistant named "model"; no
// system role: system text opens the next user turn.
void render_gemma(const std::vector<ChatMessage>& ms, std::string& out) {
  std::string system;
  for (const auto& m : ms) {
    if (m.role == "system") {
      system += trim(m.content);
      continue;
    }
    bool model = m.role == "assistant";
    out += std::string("<start_of_turn>") + (model ? "model" : m.role) + "\n";
    if (!model && !system.empty()) {
      out += system + "\n\n";
      system.clear();
    }
    out += trim(m.content) + "<end_of_turn>\n";
  }
  out += "<start_of_turn>model\n";
}

// [INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST]assistant</s>[INST] user [/INST]
// (contents trimmed, as Meta's template strips them).
void render_llama2(const std::vector<ChatMessage>& ms, std::string& out) {
  bool in_turn = true;
  out += "[INST] ";
  for (const auto& m : ms) {
    if (!in_turn) out += "[INST] ";
    in_turn = true;
    std::string c = trim(m.content);
    if (m.role == "system") {
      out += "<<SYS>>\n" + c + "\n<</SYS>>\n\n";
    } else if (m.role == "user") {
      out += c + " [/INST]";
    } else {
      out += c + "</s>";
      in_turn = false;
    }
  }
}

// Mistral v3: [INST] system\n\nuser[/INST] assistant</s>[INST] user[/INST]
void render_mistral(const std::vector<ChatMessage>& ms, std::string& out) {
  bool in_turn = false;
  for (const auto& m : ms) {
    if (!in_turn) out += "[INST] ";
    in_turn = true;
    if (m.role == "system") {
      out += m.content + "\n\n";
    } else if (m.role == "user") {
      out += m.content + "[/INST]";
    } else {
      out += ' ';
      out += trim(m.content) + "</s>";
      in_turn = false;
    }
  }
}

// Mistral v7: [SYSTEM_PROMPT] system[/SYSTEM_PROMPT][INST] user[/INST] assistant</s>
void render_mistral_v7(const std::vector<ChatMessage>& ms, std::string& out) {
  for (const auto& m : ms) {
    if (m.role == "system") {
      out += "[SYSTEM_PROMPT] " + m.content + "[/SYSTEM_PROMPT]";
    } else if (m.role == "user") {
      out += "[INST] " + m.content + "[/INST]";
    } else {
      out += " " + m.content + "</s>";
    }
  }
}

}  // namespace

std::string_view chat_family_name(ChatFamily f) {
  for (const auto& [family, name] : kNames)
    if (family == f) return name;
  return "unknown";
}

std::string chat_family_names() {
  std::string s;
  for (const auto& [family, name] : kNames) s += (s.empty() ? "" : ", ") + std::string(name);
  return s;
}

std::optional<ChatFamily> chat_family_from_name(std::string_view name) {
  for (const auto& [family, n] : kNames)
    if (n == name) return family;
  return std::nullopt;
}

std::optional<ChatFamily> detect_chat_family(std::string_view t) {
  if (auto named = chat_family_from_name(t)) return named;
  auto has = [&](std::string_view marker) { return t.find(marker) != std::string_view::npos; };
  if (has("<|im_start|>")) return ChatFamily::ChatML;
  if (has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return ChatFamily::MistralV7;
    // Mistral's official templates (v1: "' [INST] ' + system_message"; v3: tool markers)
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) return ChatFamily::Mistral;
    return ChatFamily::Llama2;
  }
  if (has("<|assistant|>") && has("<|end|>")) return ChatFamily::Phi3;
  if (has("<start_of_turn>")) return ChatFamily::Gemma;
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return ChatFamily::Llama3;
  return std::nullopt;
}

ChatFamily resolve_chat_family(const std::optional<std::string>& file_template,
                               std::string_view override_name) {
  if (!override_name.empty()) {
    if (auto f = chat_family_from_name(override_name)) return *f;
    bad_input("--chat-template {}: unknown template; the known ones are {}", override_name,
              chat_family_names());
  }
  if (!file_template || file_template->empty()) return ChatFamily::ChatML;
  if (auto f = detect_chat_family(*file_template)) return *f;
  bad_input("tokenizer.chat_template: the model's chat template is not one of the known "
            "families ({}); name one with --chat-template NAME",
            chat_family_names());
}

std::string render_chat(ChatFamily f, const std::vector<ChatMessage>& messages) {
  std::string out;
  switch (f) {
    case ChatFamily::ChatML: render_chatml(messages, out); break;
    case ChatFamily::Llama2: render_llama2(messages, out); break;
    case ChatFamily::Llama3: render_llama3(messages, out); break;
    case ChatFamily::Mistral: render_mistral(messages, out); break;
    case ChatFamily::MistralV7: render_mistral_v7(messages, out); break;
    case ChatFamily::Phi3: render_phi3(messages, out); break;
    case ChatFamily::Gemma: render_gemma(messages, out); break;
  }
  return out;
}

}  // namespace tandem::serve
