// JSONL reader: plain and gzip files, line numbers in errors, the torn-last-line policy and a
// truncated gzip stream.
#include "datasets/jsonl.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>

#include "engine/base/file.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

void WritePlain(const std::string& path, const std::string& s) {
  std::ofstream(path, std::ios::binary) << s;
}
void WriteGz(const std::string& path, const std::string& s) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, s.data(), static_cast<unsigned>(s.size())), static_cast<int>(s.size()));
  gzclose(f);
}

std::vector<std::string> ReadAll(const std::string& path, TornLastLine torn, Status* st,
                                 JsonlStats* stats = nullptr) {
  std::vector<std::string> out;
  *st = ForEachJsonlLine(
      path, torn,
      [&](const JsonlLine& l) {
        out.emplace_back(l.text);
        return Status::Ok();
      },
      stats);
  return out;
}

TEST(Jsonl, PlainAndGzipGiveTheSameLines) {
  testing::TempDir dir;
  const std::string text = "{\"a\":1}\r\n[2]\n\"three\"";
  WritePlain(dir.Join("x.jsonl"), text);
  WriteGz(dir.Join("x.jsonl.gz"), text);
  for (const char* name : {"x.jsonl", "x.jsonl.gz"}) {
    Status st;
    auto lines = ReadAll(dir.Join(name), TornLastLine::kError, &st);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "[2]", "\"three\""})) << name;
  }
}

TEST(Jsonl, NonJsonLineNamesFileAndLine) {
  testing::TempDir dir;
  std::string text;
  for (int i = 1; i <= 6; ++i) text += "{\"i\":" + std::to_string(i) + "}\n";
  text += "{\"i\": 7,\n{\"i\":8}\n";
  WritePlain(dir.Join("bad.jsonl"), text);
  Status st;
  auto lines = ReadAll(dir.Join("bad.jsonl"), TornLastLine::kError, &st);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kInvalidInput);
  EXPECT_NE(st.message().find(dir.Join("bad.jsonl") + ":7: line 7 is not JSON: "),
            std::string::npos)
      << st.message();
  EXPECT_EQ(lines.size(), 6u);
}

TEST(Jsonl, EmptyLineInTheMiddleIsAnError) {
  testing::TempDir dir;
  WritePlain(dir.Join("e.jsonl"), "1\n\n2\n");
  Status st;
  ReadAll(dir.Join("e.jsonl"), TornLastLine::kError, &st);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(":2: line 2 is empty"), std::string::npos) << st.message();
}

TEST(Jsonl, TornLastLinePolicy) {
  testing::TempDir dir;
  const std::string good = "{\"k\":1}\n{\"k\":2}\n";
  WritePlain(dir.Join("c.jsonl"), good + "{\"k\":3, \"v\": \"half");
  Status st;
  ReadAll(dir.Join("c.jsonl"), TornLastLine::kError, &st);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(":3: line 3 is not JSON"), std::string::npos) << st.message();

  JsonlStats stats;
  auto lines = ReadAll(dir.Join("c.jsonl"), TornLastLine::kTolerate, &st, &stats);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(lines.size(), 2u);
  EXPECT_TRUE(stats.torn_last_line);
  EXPECT_EQ(stats.valid_bytes, good.size());

  // Tolerance is for the last line only: a bad line followed by more is still an error.
  WritePlain(dir.Join("d.jsonl"), "{\"k\":1}\n{bad\n{\"k\":3}\n");
  ReadAll(dir.Join("d.jsonl"), TornLastLine::kTolerate, &st);
  EXPECT_FALSE(st.ok());
}

TEST(Jsonl, TruncatedGzipIsAnError) {
  testing::TempDir dir;
  std::string text;
  for (int i = 0; i < 2000; ++i)
    text += "{\"row\":" + std::to_string(i) + ",\"pad\":\"xxxxxxxxxxxx\"}\n";
  WriteGz(dir.Join("t.jsonl.gz"), text);
  auto bytes = ReadFile(dir.Join("t.jsonl.gz"));
  ASSERT_TRUE(bytes.ok());
  WritePlain(dir.Join("t.jsonl.gz"), bytes->substr(0, bytes->size() / 2));
  Status st;
  ReadAll(dir.Join("t.jsonl.gz"), TornLastLine::kTolerate, &st);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("gzip"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("t.jsonl.gz"), std::string::npos) << st.message();
}

TEST(Jsonl, CallbackErrorIsPrefixedWithLine) {
  testing::TempDir dir;
  WritePlain(dir.Join("x.jsonl"), "1\n2\n");
  Status st = ForEachJsonlLine(dir.Join("x.jsonl"), TornLastLine::kError, [](const JsonlLine& l) {
    return l.line_no == 2 ? Status::Invalid("missing field \"x\"") : Status::Ok();
  });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), dir.Join("x.jsonl") + ":2: missing field \"x\"");
}

TEST(Jsonl, MissingFile) {
  Status st = ForEachJsonlLine("/nonexistent/a.jsonl", TornLastLine::kError,
                               [](const JsonlLine&) { return Status::Ok(); });
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace dsv3
