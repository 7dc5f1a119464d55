#pragma once
// Chat templates: a conversation rendered to the prompt text of a model family. The family is
// detected from the GGUF's tokenizer.chat_template by marker substrings (as llama.cpp detects
// its built-in templates; no Jinja is run) or named by --chat-template.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::serve {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatFamily { ChatML, Llama2, Llama3, Mistral, MistralV7, Phi3, Gemma };

// "chatml", "llama2", "llama3", "mistral", "mistral-v7", "phi3", "gemma".
std::string_view chat_family_name(ChatFamily f);
// The known names, comma separated (for messages).
std::string chat_family_names();
std::optional<ChatFamily> chat_family_from_name(std::string_view name);

// The family a template text is written for: a known name itself, else by its markers;
// nullopt when no marker matches.
std::optional<ChatFamily> detect_chat_family(std::string_view template_text);

// The family to serve with: the --chat-template override when given (unknown name: BadInput
// error naming --chat-template and the known names), else the file's template detected
// (unrecognized: BadInput naming tokenizer.chat_template and the override), else chatml.
ChatFamily resolve_chat_family(const std::optional<std::string>& file_template,
                               std::string_view override_name);

// The prompt for the conversation, always ending with the generation prompt for the
// assistant's next turn. Families without a system role fold system text into the first
// user turn (gemma) or into a <<SYS>> block (llama2). The BOS token is not included: the
// tokenizer adds it.
std::string render_chat(ChatFamily f, const std::vector<ChatMessage>& messages);

}  // namespace tandem::serve
