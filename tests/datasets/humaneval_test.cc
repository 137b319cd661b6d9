// HumanEval reader: the shared 164 problems and corrupt inputs (missing field, torn gzip).
#include "datasets/humaneval.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>

#include "engine/base/file.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

TEST(HumanEval, ReadsSharedGz) {
  DSV3_REQUIRE_SHARED();
  auto p = ReadHumanEval(testing::SharedDir() + "/datasets/humaneval/HumanEval.jsonl.gz");
  ASSERT_TRUE(p.ok()) << p.status().message();
  ASSERT_EQ(p->size(), 164u);
  EXPECT_EQ((*p)[0].task_id, "HumanEval/0");
  EXPECT_EQ((*p)[0].entry_point, "has_close_elements");
  EXPECT_EQ((*p)[163].task_id, "HumanEval/163");
  EXPECT_NE((*p)[0].test.find("def check(candidate)"), std::string::npos);
}

TEST(HumanEval, MissingFieldNamesLine) {
  testing::TempDir dir;
  std::ofstream(dir.Join("h.jsonl"))
      << R"({"task_id":"T/0","prompt":"p","canonical_solution":"c","test":"t","entry_point":"f"})"
      << "\n"
      << R"({"task_id":"T/1","prompt":"p","canonical_solution":"c","test":"t"})"
      << "\n";
  auto p = ReadHumanEval(dir.Join("h.jsonl"));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(), dir.Join("h.jsonl") + ":2: missing field \"entry_point\"");
}

TEST(HumanEval, TornGzip) {
  DSV3_REQUIRE_SHARED();
  auto bytes = ReadFile(testing::SharedDir() + "/datasets/humaneval/HumanEval.jsonl.gz");
  ASSERT_TRUE(bytes.ok());
  testing::TempDir dir;
  std::ofstream(dir.Join("torn.jsonl.gz"), std::ios::binary)
      << bytes->substr(0, bytes->size() - 100);
  auto p = ReadHumanEval(dir.Join("torn.jsonl.gz"));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("truncated gzip"), std::string::npos) << p.status().message();
}

}  // namespace
}  // namespace dsv3
