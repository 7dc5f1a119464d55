// Chat templates: each family's rendering of one conversation, detection from template
// texts, the override and its errors, and what the shared GGUF files resolve to.
#include <gtest/gtest.h>
#include <tandem/core/error.hpp>
#include <tandem/model/gguf.hpp>
#include <tandem/serve/chat_template.hpp>

#include <cstdlib>
#include <filesystem>

#include "support/test_paths.hpp"

namespace tandem::serve {
namespace {

const std::vector<ChatMessage> kChat = {
    {"system", "You are terse."},
    {"user", "Hi"},
    {"assistant", "Hello."},
    {"user", "Name a color."},
};

TEST(ChatTemplate, ChatML) {
  EXPECT_EQ(render_chat(ChatFamily::ChatML, kChat),
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\nName a color.<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama3) {
  EXPECT_EQ(render_chat(ChatFamily::Llama3, kChat),
            "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama2PutsSystemInSysBlock) {
  EXPECT_EQ(render_chat(ChatFamily::Llama2, kChat),
            "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST]Hello.</s>"
            "[INST] Name a color. [/INST]");
}

TEST(ChatTemplate, Mistral) {
  EXPECT_EQ(render_chat(ChatFamily::Mistral, kChat),
            "[INST] You are terse.\n\nHi[/INST] Hello.</s>[INST] Name a color.[/INST]");
}

TEST(ChatTemplate, MistralV7) {
  EXPECT_EQ(render_chat(ChatFamily::MistralV7, kChat),
            "[SYSTEM_PROMPT] You are terse.[/SYSTEM_PROMPT][INST] Hi[/INST] Hello.</s>"
            "[INST] Name a color.[/INST]");
}

TEST(ChatTemplate, Phi3) {
  EXPECT_EQ(render_chat(ChatFamily::Phi3, kChat),
            "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi<|end|>\n"
            "<|assistant|>\nHello.<|end|>\n<|user|>\nName a color.<|end|>\n<|assistant|>\n");
}

TEST(ChatTemplate, GemmaFoldsSystemIntoFirstUserTurn) {
  EXPECT_EQ(render_chat(ChatFamily::Gemma, kChat),
            "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n"
            "<start_of_turn>model\nHello.<end_of_turn>\n"
            "<start_of_turn>user\nName a color.<end_of_turn>\n"
            "<start_of_turn>model\n");
}

TEST(ChatTemplate, DetectsByMarkers) {
  using F = ChatFamily;
  EXPECT_EQ(detect_chat_family("{% for m in messages %}<|im_start|>{{m.role}}"), F::ChatML);
  EXPECT_EQ(detect_chat_family("<|start_header_id|>' + role + '<|end_header_id|>"), F::Llama3);
  EXPECT_EQ(detect_chat_family("{{ bos_token + '[INST] ' + content + ' [/INST]' }} <<SYS>>"),
            F::Llama2);
  EXPECT_EQ(detect_chat_family("[AVAILABLE_TOOLS] [INST] x [/INST]"), F::Mistral);
  EXPECT_EQ(detect_chat_family("[SYSTEM_PROMPT]{{s}}[/SYSTEM_PROMPT][INST]"), F::MistralV7);
  EXPECT_EQ(detect_chat_family("<|user|>\n{{c}}<|end|>\n<|assistant|>\n"), F::Phi3);
  EXPECT_EQ(detect_chat_family("<start_of_turn>model\n"), F::Gemma);
  EXPECT_EQ(detect_chat_family("gemma"), F::Gemma);  // a name is its own template
  EXPECT_EQ(detect_chat_family("{{ messages }}"), std::nullopt);
}

TEST(ChatTemplate, OverrideWinsAndUnknownNameListsTheKnownOnes) {
  EXPECT_EQ(resolve_chat_family(std::string("<|im_start|>"), "gemma"), ChatFamily::Gemma);
  EXPECT_EQ(resolve_chat_family(std::nullopt, ""), ChatFamily::ChatML);
  EXPECT_EQ(resolve_chat_family(std::string("<start_of_turn>"), ""), ChatFamily::Gemma);
  try {
    resolve_chat_family(std::nullopt, "vicuna");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    std::string m = e.what();
    EXPECT_NE(m.find("--chat-template vicuna"), std::string::npos) << m;
    for (const char* n : {"chatml", "llama2", "llama3", "mistral", "phi3", "gemma"})
      EXPECT_NE(m.find(n), std::string::npos) << n;
  }
  EXPECT_THROW(resolve_chat_family(std::string("{{ messages }}"), ""), Error);
}

// The shared GGUF files: a template they carry is detected; none means chatml.
TEST(ChatTemplate, SharedModelsResolve) {
  int files = 0;
  for (const char* rel : {"models/tiny-f16.gguf", "vocab/ggml-vocab-llama-spm.gguf",
                          "vocab/ggml-vocab-llama-bpe.gguf", "vocab/ggml-vocab-gpt-2.gguf"}) {
    auto f = gguf::File::open(test::shared_path(rel));
    auto tmpl = f.find_string("tokenizer.chat_template");
    ChatFamily fam = resolve_chat_family(tmpl, "");
    if (!tmpl) {
      EXPECT_EQ(fam, ChatFamily::ChatML) << rel;
    }
    ++files;
  }
  EXPECT_EQ(files, 4);
}

// Real templates from Hugging Face models, as llama.cpp's source tree keeps them
// (models/templates; $TANDEM_PEER_TEMPLATES or /tmp/peer/llama.cpp/models/templates).
TEST(ChatTemplate, DetectsRealTemplates) {
  const char* env = std::getenv("TANDEM_PEER_TEMPLATES");
  std::string dir = env ? env : "/tmp/peer/llama.cpp/models/templates";
  if (!std::filesystem::is_directory(dir)) GTEST_SKIP() << "no template folder " << dir;
  const std::vector<std::pair<const char*, ChatFamily>> cases = {
      {"Qwen-Qwen2.5-7B-Instruct.jinja", ChatFamily::ChatML},
      {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", ChatFamily::ChatML},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", ChatFamily::Llama3},
      {"meta-llama-Llama-3.3-70B-Instruct.jinja", ChatFamily::Llama3},
      {"microsoft-Phi-3.5-mini-instruct.jinja", ChatFamily::Phi3},
      {"google-gemma-2-2b-it.jinja", ChatFamily::Gemma},
      {"mistralai-Mistral-Nemo-Instruct-2407.jinja", ChatFamily::Mistral},
      {"Mistral-Small-3.2-24B-Instruct-2506.jinja", ChatFamily::MistralV7},
  };
  for (const auto& [file, family] : cases) {
    std::string text = test::read_text(dir + "/" + file);
    ASSERT_FALSE(text.empty()) << file;
    auto got = detect_chat_family(text);
    ASSERT_TRUE(got.has_value()) << file;
    EXPECT_EQ(chat_family_name(*got), chat_family_name(family)) << file;
  }
}

}  // namespace
}  // namespace tandem::serve
