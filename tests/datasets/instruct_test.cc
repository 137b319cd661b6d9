// Alpaca reader: JSON array and JSONL layouts, the shared demo sets, corrupt records.
#include "datasets/instruct.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

TEST(Instruct, ArrayAndJsonlLayouts) {
  testing::TempDir dir;
  std::ofstream(dir.Join("a.json")) << R"(  [{"instruction":"i","output":"o"},
      {"instruction":"i2","input":"x","output":"o2","history":[]}])";
  auto a = ReadInstruct(dir.Join("a.json"));
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].input, "");
  EXPECT_EQ((*a)[1].input, "x");
  std::ofstream(dir.Join("b.jsonl")) << R"({"instruction":"i","input":"","output":"o"})"
                                     << "\n";
  auto b = ReadInstruct(dir.Join("b.jsonl"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)[0].output, "o");
}

TEST(Instruct, Errors) {
  testing::TempDir dir;
  std::ofstream(dir.Join("a.json")) << R"([{"instruction":"i","output":"o"}, {"instruction":"i"}])";
  auto a = ReadInstruct(dir.Join("a.json"));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().message(), dir.Join("a.json") + ": record 1: missing field \"output\"");
  std::ofstream(dir.Join("b.jsonl")) << R"({"instruction":"i","output":"o"})"
                                     << "\n{oops\n";
  auto b = ReadInstruct(dir.Join("b.jsonl"));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find(":2: line 2 is not JSON"), std::string::npos);
  std::ofstream(dir.Join("c.jsonl")) << R"({"instruction":1,"output":"o"})"
                                     << "\n";
  EXPECT_FALSE(ReadInstruct(dir.Join("c.jsonl")).ok());
  std::ofstream(dir.Join("d.json")) << "[1, 2";
  EXPECT_FALSE(ReadInstruct(dir.Join("d.json")).ok());
}

TEST(Instruct, SharedDemoSets) {
  DSV3_REQUIRE_SHARED();
  auto en = ReadInstruct(testing::SharedDir() + "/datasets/instruct/alpaca_en_demo.train.jsonl");
  ASSERT_TRUE(en.ok()) << en.status().message();
  EXPECT_EQ(en->size(), 896u);
  auto zh = ReadInstruct(testing::SharedDir() + "/datasets/instruct/alpaca_zh_demo.train.jsonl");
  ASSERT_TRUE(zh.ok());
  EXPECT_EQ(zh->size(), 898u);
}

}  // namespace
}  // namespace dsv3
