// LongBench readers: a fixture record, field type errors, the shared config JSONs and the
// prompt filling of pred.py.
#include "datasets/longbench.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

const char* kRecord =
    R"({"input":"Who?","context":"Doc {x}","answers":["Ann"],"length":12,"dataset":"hotpotqa",)"
    R"("language":"en","all_classes":null,"_id":"ab12"})";

TEST(LongBench, ReadsRecords) {
  testing::TempDir dir;
  std::ofstream(dir.Join("hotpotqa.jsonl"))
      << kRecord << "\n"
      << R"({"input":"","context":"c","answers":["A","B"],"length":5000,"dataset":"trec",)"
      << R"("language":"en","all_classes":["A","B"],"_id":"cd"})"
      << "\n";
  auto r = ReadLongBench(dir.Join("hotpotqa.jsonl"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].input, "Who?");
  EXPECT_FALSE((*r)[0].all_classes.has_value());
  EXPECT_EQ((*r)[1].all_classes->size(), 2u);
  EXPECT_EQ((*r)[1].length, 5000);
  EXPECT_EQ((*r)[1].line, 2);
}

TEST(LongBench, BadFieldTypeNamesLineAndField) {
  testing::TempDir dir;
  std::ofstream(dir.Join("x.jsonl"))
      << kRecord << "\n"
      << R"({"input":"","context":"c","answers":"A","length":1,"dataset":"d","language":"en",)"
      << R"("all_classes":null,"_id":"x"})"
      << "\n";
  auto r = ReadLongBench(dir.Join("x.jsonl"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            dir.Join("x.jsonl") + ":2: field \"answers\" is string, expected a list of strings");
}

TEST(LongBench, NonJsonLine) {
  testing::TempDir dir;
  std::ofstream(dir.Join("x.jsonl")) << kRecord << "\nnot json\n";
  auto r = ReadLongBench(dir.Join("x.jsonl"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(":2: line 2 is not JSON"), std::string::npos);
}

TEST(LongBench, FillPromptLikeStrFormat) {
  LongBenchRecord r;
  r.context = "ctx with {braces}";
  r.input = "q";
  auto p = FillLongBenchPrompt("A {context} B {{lit}} {input}", r);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "A ctx with {braces} B {lit} q");
  EXPECT_FALSE(FillLongBenchPrompt("{nope}", r).ok());
  EXPECT_FALSE(FillLongBenchPrompt("a } b", r).ok());
  EXPECT_FALSE(FillLongBenchPrompt("a { b", r).ok());
}

TEST(LongBench, SharedConfig) {
  DSV3_REQUIRE_SHARED();
  auto cfg = ReadLongBenchConfig(testing::SharedDir() + "/datasets/longbench/config");
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  EXPECT_EQ(cfg->prompt.size(), 21u);
  EXPECT_EQ(cfg->maxlen.at("gov_report"), 512);
  EXPECT_EQ(cfg->maxlen.at("hotpotqa"), 32);
  LongBenchRecord r;
  r.context = "CTX";
  r.input = "IN";
  for (const auto& [name, tmpl] : cfg->prompt) {
    auto p = FillLongBenchPrompt(tmpl, r);
    ASSERT_TRUE(p.ok()) << name << ": " << p.status().message();
    EXPECT_NE(p->find("CTX"), std::string::npos) << name;
  }
}

TEST(LongBench, Predictions) {
  testing::TempDir dir;
  std::ofstream(dir.Join("p.jsonl"))
      << R"({"pred":"x","answers":["x"],"all_classes":null,"length":3})"
      << "\n"
      << R"({"pred":1,"answers":["x"],"all_classes":null,"length":3})"
      << "\n";
  auto p = ReadLongBenchPredictions(dir.Join("p.jsonl"));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(),
            dir.Join("p.jsonl") + ":2: field \"pred\" is number, expected a string");
}

}  // namespace
}  // namespace dsv3
