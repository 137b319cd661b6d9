// Chat template tests: every rendered case in the shared chat_cases.jsonl (produced by a
// Jinja engine from the real template) byte for byte, plus the shapes we reject.
#include "engine/io/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/file.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;

const char* kBos = "<｜begin▁of▁sentence｜>";

std::string V3Dir() { return testing::SharedDir() + "/datasets/tokenizer/deepseek-v3"; }

TEST(ChatTemplateDeepSeekV3, RendersEverySharedCaseByteForByte) {
  DSV3_REQUIRE_SHARED();
  auto tmpl = ChatTemplate::Load(V3Dir());
  ASSERT_TRUE(tmpl.ok()) << tmpl.status().message();
  EXPECT_EQ(tmpl->bos_token(), kBos);
  std::ifstream in(V3Dir() + "/chat_cases.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const json c = json::parse(line);
    auto messages = ParseChatMessages(c["messages"].dump());
    ASSERT_TRUE(messages.ok()) << messages.status().message();
    auto rendered = tmpl->Render(*messages, c["add_generation_prompt"].get<bool>());
    ASSERT_TRUE(rendered.ok()) << "case " << n << ": " << rendered.status().message();
    EXPECT_EQ(*rendered, c["rendered"].get<std::string>()) << "case " << n;
    ++n;
  }
  EXPECT_EQ(n, 12);
}

TEST(ChatTemplateDeepSeekV3, RefusesAnotherTemplate) {
  auto other = ChatTemplate::FromConfigJson(R"({"chat_template": "{{ messages }}", "bos_token": "<s>"})", "cfg.json");
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("not the DeepSeek-V3 template"), std::string::npos);
  EXPECT_FALSE(ChatTemplate::FromConfigJson("{", "cfg.json").ok());
  EXPECT_FALSE(ChatTemplate::FromConfigJson(R"({"bos_token": "<s>"})", "cfg.json").ok());
}

TEST(ChatTemplateDeepSeekV3, SecondToolTurnKeepsTheTemplatesQuirk) {
  // ns.is_first is never reset, so the second tool-calling turn takes the "else" branch.
  ChatTemplate tmpl(kBos);
  std::vector<ChatMessage> m = {{"user", "q", {}},
                                {"assistant", std::nullopt, {{"function", "f", "{}"}}},
                                {"tool", "1", {}},
                                {"assistant", std::nullopt, {{"function", "g", "{}"}}}};
  auto r = tmpl.Render(m, false);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, std::string(kBos) +
                    "<｜User｜>q<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n"
                    "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>1"
                    "<｜tool▁output▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>g\n```json\n{}\n```"
                    "<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
}

TEST(ChatTemplateDeepSeekV3, RejectsShapesTheTemplateWouldMangle) {
  ChatTemplate tmpl(kBos);
  struct Bad {
    std::vector<ChatMessage> messages;
    const char* needle;
  };
  const std::vector<Bad> cases = {
      {{{"developer", "x", {}}}, "unknown role \"developer\""},
      {{{"user", std::nullopt, {}}}, "content is null"},
      {{{"assistant", std::nullopt, {}}}, "no tool_calls"},
      {{{"assistant", "text", {{"function", "f", "{}"}}}}, "both content and tool_calls"},
      {{{"user", "x", {{"function", "f", "{}"}}}}, "only assistant"},
  };
  for (const Bad& b : cases) {
    auto r = tmpl.Render(b.messages, true);
    ASSERT_FALSE(r.ok()) << b.needle;
    EXPECT_NE(r.status().message().find(b.needle), std::string::npos) << r.status().message();
  }
  EXPECT_FALSE(ParseChatMessages(R"([{"content": "no role"}])").ok());
  EXPECT_FALSE(ParseChatMessages(R"([{"role": "user", "content": 3}])").ok());
  auto args = ParseChatMessages(R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}])");
  ASSERT_FALSE(args.ok());
  EXPECT_NE(args.status().message().find("arguments"), std::string::npos);
}

}  // namespace
}  // namespace dsv3
