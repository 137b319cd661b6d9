// DeepSeek-V3 chat template; see chat_template.h. The Jinja source this mirrors is the
// `chat_template` of deepseek-ai/DeepSeek-V3's tokenizer_config.json (fingerprint below).
#include "engine/io/chat_template.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include "engine/base/file.h"

namespace dsv3 {

namespace {

using json = nlohmann::json;

// FNV-1a of the Jinja text this file implements (2301 bytes).
constexpr uint64_t kDeepSeekV3TemplateFnv = 0xebe3604156dc466aull;

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

constexpr const char* kUser = "<｜User｜>";
constexpr const char* kAssistant = "<｜Assistant｜>";
constexpr const char* kEos = "<｜end▁of▁sentence｜>";
constexpr const char* kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr const char* kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr const char* kCallBegin = "<｜tool▁call▁begin｜>";
constexpr const char* kCallEnd = "<｜tool▁call▁end｜>";
constexpr const char* kSep = "<｜tool▁sep｜>";
constexpr const char* kOutputsBegin = "<｜tool▁outputs▁begin｜>";
constexpr const char* kOutputsEnd = "<｜tool▁outputs▁end｜>";
constexpr const char* kOutputBegin = "<｜tool▁output▁begin｜>";
constexpr const char* kOutputEnd = "<｜tool▁output▁end｜>";

// The template's `ns` namespace. Note is_first and is_output_first are never reset: in a
// conversation with two tool-calling turns the second one renders differently. That is
// the template's behaviour and what the model saw in training, so it is reproduced.
struct State {
  bool is_first = false;
  bool is_tool = false;
  bool is_output_first = true;
};

// Rejects what the Jinja template would render wrongly or fail on.
Status Check(const ChatMessage& m, size_t i) {
  const std::string where = "message " + std::to_string(i) + " (" + m.role + "): ";
  if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool")
    return Status::Invalid("message " + std::to_string(i) + ": unknown role \"" + m.role +
                           "\" (system, user, assistant or tool)");
  if (m.role != "assistant" && !m.content) return Status::Invalid(where + "content is null");
  if (m.role != "assistant" && !m.tool_calls.empty()) return Status::Invalid(where + "only assistant messages carry tool_calls");
  if (m.role == "assistant" && !m.content && m.tool_calls.empty())
    return Status::Invalid(where + "content is null and there are no tool_calls");
  if (m.role == "assistant" && m.content && !m.tool_calls.empty())
    return Status::Invalid(where + "has both content and tool_calls; the DeepSeek-V3 template would drop the tool_calls");
  return Status::Ok();
}

void RenderToolCalls(const ChatMessage& m, State* ns, std::string* out) {
  for (const ChatToolCall& call : m.tool_calls) {
    const std::string body = call.type + kSep + call.name + "\n```json\n" + call.arguments + "\n```" + kCallEnd;
    if (!ns->is_first) {
      // The first call of the conversation opens the block; with a single call the block is
      // never closed (no tool_calls_end / EOS): a quirk of the template, kept on purpose.
      *out += std::string(kAssistant) + kCallsBegin + kCallBegin + body;
      ns->is_first = true;
    } else {
      *out += std::string("\n") + kCallBegin + body + kCallsEnd + kEos;
    }
  }
}

void RenderMessage(const ChatMessage& m, State* ns, std::string* out) {
  if (m.role == "user") {
    ns->is_tool = false;
    *out += kUser + *m.content;
  } else if (m.role == "assistant" && !m.content) {
    ns->is_tool = false;
    RenderToolCalls(m, ns, out);
  } else if (m.role == "assistant") {
    *out += (ns->is_tool ? kOutputsEnd : kAssistant) + *m.content + kEos;
    ns->is_tool = false;
  } else if (m.role == "tool") {
    ns->is_tool = true;
    *out += (ns->is_output_first ? std::string(kOutputsBegin) : std::string("\n")) + kOutputBegin + *m.content +
            kOutputEnd;
    ns->is_output_first = false;
  }
}

StatusOr<ChatToolCall> ParseToolCall(const json& j) {
  if (!j.is_object() || !j.contains("function") || !j["function"].is_object())
    return Status::Invalid("tool call needs a \"function\" object");
  const json& f = j["function"];
  if (!f.contains("name") || !f["name"].is_string()) return Status::Invalid("tool call function needs a string \"name\"");
  if (!f.contains("arguments") || !f["arguments"].is_string())
    return Status::Invalid("tool call arguments must be a JSON string (the template pastes it verbatim)");
  ChatToolCall call;
  if (j.contains("type")) {
    if (!j["type"].is_string()) return Status::Invalid("tool call \"type\" must be a string");
    call.type = j["type"].get<std::string>();
  }
  call.name = f["name"].get<std::string>();
  call.arguments = f["arguments"].get<std::string>();
  return call;
}

StatusOr<ChatMessage> ParseMessage(const json& j) {
  if (!j.is_object() || !j.contains("role") || !j["role"].is_string())
    return Status::Invalid("not an object with a string \"role\"");
  ChatMessage m;
  m.role = j["role"].get<std::string>();
  if (j.contains("content") && !j["content"].is_null()) {
    if (!j["content"].is_string()) return Status::Invalid("\"content\" must be a string or null");
    m.content = j["content"].get<std::string>();
  }
  if (j.contains("tool_calls") && !j["tool_calls"].is_null()) {
    if (!j["tool_calls"].is_array()) return Status::Invalid("\"tool_calls\" must be an array");
    for (const json& c : j["tool_calls"]) {
      ASSIGN_OR_RETURN(ChatToolCall call, ParseToolCall(c));
      m.tool_calls.push_back(std::move(call));
    }
  }
  return m;
}

}  // namespace

StatusOr<ChatTemplate> ChatTemplate::FromConfigJson(std::string_view config_json, const std::string& name) {
  json config;
  try {
    config = json::parse(config_json);
  } catch (const json::exception& e) {
    return Status::Invalid(name + ": not valid JSON: " + e.what());
  }
  if (!config.is_object() || !config.contains("chat_template") || !config["chat_template"].is_string())
    return Status::Invalid(name + ": no chat_template string");
  const std::string tmpl = config["chat_template"].get<std::string>();
  if (Fnv1a(tmpl) != kDeepSeekV3TemplateFnv)
    return Status::Invalid(name + ": chat_template is not the DeepSeek-V3 template this build implements");
  std::string bos;
  const json& b = config.contains("bos_token") ? config["bos_token"] : json();
  if (b.is_string()) bos = b.get<std::string>();
  else if (b.is_object() && b.contains("content") && b["content"].is_string()) bos = b["content"].get<std::string>();
  else return Status::Invalid(name + ": bos_token must be a string or an AddedToken object");
  return ChatTemplate(std::move(bos));
}

StatusOr<ChatTemplate> ChatTemplate::Load(const std::string& tokenizer_dir) {
  const std::string path = JoinPath(tokenizer_dir, "tokenizer_config.json");
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return FromConfigJson(text, path);
}

StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                           bool add_generation_prompt) const {
  std::string system;
  bool first_system = true;
  for (size_t i = 0; i < messages.size(); ++i) {
    RETURN_IF_ERROR(Check(messages[i], i));
    if (messages[i].role != "system") continue;
    system += (first_system ? "" : "\n\n") + *messages[i].content;
    first_system = false;
  }
  std::string out = bos_token_ + system;
  State ns;
  for (const ChatMessage& m : messages) RenderMessage(m, &ns, &out);
  if (ns.is_tool) out += kOutputsEnd;
  if (add_generation_prompt && !ns.is_tool) out += kAssistant;
  return out;
}

StatusOr<std::vector<ChatMessage>> ParseChatMessages(std::string_view json_text) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("messages: not valid JSON: ") + e.what());
  }
  if (!j.is_array()) return Status::Invalid("messages: expected a JSON array");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < j.size(); ++i) {
    auto m = ParseMessage(j[i]);
    RETURN_IF_ERROR(m.status().WithPrefix("message " + std::to_string(i) + ": "));
    messages.push_back(std::move(m).value());
  }
  return messages;
}

}  // namespace dsv3
