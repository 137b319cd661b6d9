// CSV parser: RFC-4180 quoting, line ends, and the corruption cases naming file:line.
#include "datasets/csv.h"

#include <gtest/gtest.h>

namespace dsv3 {
namespace {

std::vector<std::vector<std::string>> Fields(const std::vector<CsvRow>& rows) {
  std::vector<std::vector<std::string>> out;
  for (const auto& r : rows) out.push_back(r.fields);
  return out;
}

TEST(Csv, QuotedNewlinesQuotesAndCrlf) {
  auto rows = ParseCsv("a,\"b\nc\",\"say \"\"hi\"\"\"\r\n\"\",x,\r\nlast,row", "t.csv");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  using V = std::vector<std::vector<std::string>>;
  EXPECT_EQ(Fields(*rows), (V{{"a", "b\nc", "say \"hi\""}, {"", "x", ""}, {"last", "row"}}));
  EXPECT_EQ((*rows)[0].line, 1);
  EXPECT_EQ((*rows)[1].line, 3);  // the quoted newline moved it one line down
  EXPECT_EQ((*rows)[2].line, 4);
}

TEST(Csv, EmptyLinesBomAndNoFinalNewline) {
  auto rows = ParseCsv("\xEF\xBB\xBFq,1\n\nr,2\n", "t.csv");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].fields[0], "q");
  EXPECT_EQ((*rows)[1].line, 3);
}

TEST(Csv, CrInsideQuotedFieldIsKept) {
  auto rows = ParseCsv("\"a\r\nb\",c\r\n", "t.csv");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].fields[0], "a\r\nb");
}

TEST(Csv, UnterminatedQuoteNamesTheLineItOpened) {
  auto rows = ParseCsv("a,b\nc,\"never\nclosed\n", "bad.csv");
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), StatusCode::kInvalidInput);
  EXPECT_NE(rows.status().message().find("bad.csv:2:"), std::string::npos)
      << rows.status().message();
  EXPECT_NE(rows.status().message().find("never closed"), std::string::npos);
}

TEST(Csv, GarbageAfterClosingQuote) {
  auto rows = ParseCsv("ok,row\n\"abc\"x,y\n", "bad.csv");
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().message().find("bad.csv:2:"), std::string::npos)
      << rows.status().message();
}

TEST(Csv, BareQuoteInUnquotedField) {
  auto rows = ParseCsv("a,b\"c\n", "bad.csv");
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().message().find("bad.csv:1:"), std::string::npos);
}

TEST(Csv, InvalidUtf8) {
  auto rows = ParseCsv("a,b\nc,\xC3\x28\n", "bad.csv");
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().message().find("bad.csv:2: field is not valid UTF-8"), std::string::npos)
      << rows.status().message();
}

TEST(Csv, MissingFileIsNotFound) {
  auto rows = ReadCsvFile("/nonexistent/x.csv");
  ASSERT_FALSE(rows.ok());
  EXPECT_EQ(rows.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace dsv3
