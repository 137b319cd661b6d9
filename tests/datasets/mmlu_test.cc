// MMLU reader: fixture rows, the 5-field corruption case, and every shared CSV.
#include "datasets/mmlu.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/base/file.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

void Write(const std::string& path, const std::string& s) {
  std::ofstream(path, std::ios::binary) << s;
}

TEST(Mmlu, ReadsRowsWithQuotedNewlinesAndCrlf) {
  testing::TempDir dir;
  Write(dir.Join("x.csv"), "\"What is\n2+2?\",3,4,5,6,B\r\nQ2,a,\"b, c\",d,e,D\r\n");
  auto qs = ReadMmluCsv(dir.Join("x.csv"));
  ASSERT_TRUE(qs.ok()) << qs.status().message();
  ASSERT_EQ(qs->size(), 2u);
  EXPECT_EQ((*qs)[0].question, "What is\n2+2?");
  EXPECT_EQ((*qs)[0].answer, 1);
  EXPECT_EQ((*qs)[1].choices[1], "b, c");
  EXPECT_EQ((*qs)[1].answer, 3);
  EXPECT_EQ((*qs)[1].line, 3);
}

TEST(Mmlu, RowWithFiveFieldsNamesFileAndLine) {
  testing::TempDir dir;
  Write(dir.Join("x.csv"), "Q1,a,b,c,d,A\nQ2,a,b,c,D\n");
  auto qs = ReadMmluCsv(dir.Join("x.csv"));
  ASSERT_FALSE(qs.ok());
  EXPECT_EQ(qs.status().code(), StatusCode::kInvalidInput);
  EXPECT_EQ(qs.status().message(),
            dir.Join("x.csv") + ":2: row has 5 fields, expected 6 (question,A,B,C,D,answer)");
}

TEST(Mmlu, BadAnswerLetter) {
  testing::TempDir dir;
  Write(dir.Join("x.csv"), "Q1,a,b,c,d,E\n");
  auto qs = ReadMmluCsv(dir.Join("x.csv"));
  ASSERT_FALSE(qs.ok());
  EXPECT_NE(qs.status().message().find(":1: answer is \"E\""), std::string::npos);
}

TEST(Mmlu, UnknownSubjectFileIsAnError) {
  testing::TempDir dir;
  ASSERT_EQ(system(("mkdir -p " + dir.Join("test")).c_str()), 0);
  Write(dir.Join("test/abstract_algebra_test.csv"), "Q,a,b,c,d,A\n");
  auto ok = ListMmluTestSubjects(dir.path());
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, std::vector<std::string>{"abstract_algebra"});
  Write(dir.Join("test/abstract_algebraa_test.csv"), "Q,a,b,c,d,A\n");
  EXPECT_FALSE(ListMmluTestSubjects(dir.path()).ok());
  // dev file missing: the error names it.
  auto data = LoadMmluSubject(dir.path(), "abstract_algebra");
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.status().message().find("abstract_algebra_dev.csv"), std::string::npos);
}

TEST(Mmlu, CategoryTableMatchesSharedSubjectsJson) {
  DSV3_REQUIRE_SHARED();
  auto text = ReadFile(testing::SharedDir() + "/datasets/mmlu/subjects.json");
  ASSERT_TRUE(text.ok());
  auto j = nlohmann::json::parse(*text);
  ASSERT_EQ(j.size(), MmluSubjects().size());
  const std::map<std::string, MmluCategory> names = {
      {"STEM", MmluCategory::kStem},
      {"humanities", MmluCategory::kHumanities},
      {"social sciences", MmluCategory::kSocialSciences},
      {"other (business, health, misc.)", MmluCategory::kOther}};
  for (auto& [subject, info] : j.items()) {
    auto c = MmluCategoryOf(subject);
    ASSERT_TRUE(c.ok()) << subject;
    EXPECT_EQ(*c, names.at(info["category"].get<std::string>())) << subject;
  }
}

TEST(Mmlu, EverySharedCsvParses) {
  DSV3_REQUIRE_SHARED();
  const std::string root = testing::SharedDir() + "/datasets/mmlu";
  auto subjects = ListMmluTestSubjects(root);
  ASSERT_TRUE(subjects.ok()) << subjects.status().message();
  EXPECT_EQ(subjects->size(), 49u);
  size_t test_rows = 0;
  for (const auto& s : *subjects) {
    auto data = LoadMmluSubject(root, s);
    ASSERT_TRUE(data.ok()) << data.status().message();
    EXPECT_EQ(data->dev.size(), 5u) << s;
    test_rows += data->test.size();
  }
  EXPECT_EQ(test_rows, 10601u);  // README: 49 subjects, 10,601 questions
  auto all = LoadMmluSubjects(root, {});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 49u);
  auto two = LoadMmluSubjects(root, {"virology", "anatomy"});  // anatomy's test is held out
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.status().message().find("anatomy_test.csv"), std::string::npos);
  EXPECT_FALSE(LoadMmluSubjects(root, {"virology", "virology"}).ok());
  for (const auto& s : MmluSubjects()) {
    auto dev = ReadMmluCsv(MmluDevPath(root, s.name));
    ASSERT_TRUE(dev.ok()) << dev.status().message();
    EXPECT_EQ(dev->size(), 5u) << s.name;
  }
}

}  // namespace
}  // namespace dsv3
