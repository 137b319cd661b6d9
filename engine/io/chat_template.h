// The DeepSeek-V3 chat template, written out in C++ instead of run through a Jinja engine.
// This is the one place that knows how a conversation becomes a prompt string; its output is
// byte-identical to what the `chat_template` in DeepSeek-V3's tokenizer_config.json renders,
// including the template's quirks (see chat_template.cc). Load() refuses a config whose
// template is a different one, since rendering it with this logic would be silently wrong.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

struct ChatToolCall {
  std::string type = "function";
  std::string name;
  std::string arguments;  // JSON text, rendered verbatim
};

struct ChatMessage {
  std::string role;                    // system | user | assistant | tool
  std::optional<std::string> content;  // null only on an assistant message with tool_calls
  std::vector<ChatToolCall> tool_calls;
};

class ChatTemplate {
 public:
  // DIR/tokenizer_config.json: checks its chat_template and takes bos_token from it.
  static StatusOr<ChatTemplate> Load(const std::string& tokenizer_dir);
  static StatusOr<ChatTemplate> FromConfigJson(std::string_view config_json, const std::string& name);

  explicit ChatTemplate(std::string bos_token) : bos_token_(std::move(bos_token)) {}

  // The prompt text (tokenize it with Encode(text, /*add_special_tokens=*/false): it already
  // starts with BOS). Unknown roles and message shapes the template would mangle are errors.
  StatusOr<std::string> Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  const std::string& bos_token() const { return bos_token_; }

 private:
  std::string bos_token_;
};

// Parses an OpenAI-style JSON array of {"role", "content", "tool_calls"} messages.
StatusOr<std::vector<ChatMessage>> ParseChatMessages(std::string_view json_text);

}  // namespace dsv3
