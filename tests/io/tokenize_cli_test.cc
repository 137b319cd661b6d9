// `dsv3 tokenize` end to end: --text, JSONL in/out both ways, and exit 2 with a message that
// names the file and line for bad tokenizers, bad records and bad flag combinations.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/base/file.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

using testing::RunDsv3;

std::string V3Dir() { return testing::SharedDir() + "/datasets/tokenizer/deepseek-v3"; }

TEST(TokenizeCli, TextToIdsAndBack) {
  DSV3_REQUIRE_SHARED();
  auto r = RunDsv3({"tokenize", "--tokenizer", V3Dir(), "--text", "Hello world"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "19923 2058\n");
  r = RunDsv3({"tokenize", "--tokenizer", V3Dir(), "--text", "Hello world", "--add-bos"});
  EXPECT_EQ(r.out, "0 19923 2058\n");
  r = RunDsv3({"tokenize", "--tokenizer", V3Dir(), "--decode", "--text", "0 19923 2058"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "<｜begin▁of▁sentence｜>Hello world\n");
  r = RunDsv3({"tokenize", "--tokenizer", V3Dir(), "--decode", "--skip-special-tokens", "--text", "0,19923,2058"});
  EXPECT_EQ(r.out, "Hello world\n");
}

TEST(TokenizeCli, JsonlRoundTrip) {
  DSV3_REQUIRE_SHARED();
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.Join("in.jsonl"),
                              "{\"id\": 7, \"text\": \"Hello world\"}\n\n{\"text\": \"你好\\n\\tx\"}\n")
                  .ok());
  auto r = RunDsv3({"tokenize", "--tokenizer", V3Dir(), "--input", dir.Join("in.jsonl"), "--output",
                    dir.Join("ids.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ids = ReadFile(dir.Join("ids.jsonl"));
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->substr(0, ids->find('\n')), R"({"id":7,"text":"Hello world","ids":[19923,2058]})");
  // Decode the ids alone and compare the texts.
  std::string only_ids;
  for (size_t pos = 0, end; (end = ids->find('\n', pos)) != std::string::npos; pos = end + 1) {
    auto rec = nlohmann::json::parse(ids->substr(pos, end - pos));
    only_ids += nlohmann::json({{"ids", rec["ids"]}}).dump() + "\n";
  }
  ASSERT_TRUE(WriteFileAtomic(dir.Join("only_ids.jsonl"), only_ids).ok());
  r = RunDsv3({"tokenize", "--tokenizer", V3Dir(), "--decode", "--input", dir.Join("only_ids.jsonl"), "--output",
               dir.Join("text.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto text = ReadFile(dir.Join("text.jsonl"));
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find(R"("text":"Hello world")"), std::string::npos) << *text;
  EXPECT_NE(text->find(R"("text":"你好\n\tx")"), std::string::npos) << *text;
}

TEST(TokenizeCli, BadInputExitsTwoNamingTheLine) {
  DSV3_REQUIRE_SHARED();
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.Join("in.jsonl"), "{\"text\": \"ok\"}\n{\"text\": 5}\n").ok());
  auto r = RunDsv3({"tokenize", "--tokenizer", V3Dir(), "--input", dir.Join("in.jsonl"), "--output",
                    dir.Join("out.jsonl")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("in.jsonl:2: missing \"text\" string"), std::string::npos) << r.err;
  EXPECT_FALSE(FileExists(dir.Join("out.jsonl"))) << "no half-written output";

  ASSERT_TRUE(WriteFileAtomic(dir.Join("ids.jsonl"), "{\"ids\": [1, 2]}\n{\"ids\": [999999]}\n").ok());
  r = RunDsv3({"tokenize", "--tokenizer", V3Dir(), "--decode", "--input", dir.Join("ids.jsonl"), "--output",
               dir.Join("out.jsonl")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("ids.jsonl:2: token id 999999"), std::string::npos) << r.err;

  ASSERT_TRUE(WriteFileAtomic(dir.Join("bad.jsonl"), "{\"text\": \"a\"}\nnot json\n").ok());
  r = RunDsv3({"tokenize", "--tokenizer", V3Dir(), "--input", dir.Join("bad.jsonl"), "--output",
               dir.Join("out.jsonl")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("bad.jsonl:2: not valid JSON"), std::string::npos) << r.err;
}

TEST(TokenizeCli, MalformedTokenizerExitsTwo) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.Join("tokenizer.json"), "{\"version\": \"1.0\", ").ok());
  auto r = RunDsv3({"tokenize", "--tokenizer", dir.path(), "--text", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(dir.Join("tokenizer.json") + ": not valid JSON"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one-line message: " << r.err;

  ASSERT_TRUE(WriteFileAtomic(dir.Join("tokenizer.json"), R"({"version": "1.0", "added_tokens": []})").ok());
  r = RunDsv3({"tokenize", "--tokenizer", dir.path(), "--text", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("missing \"model\""), std::string::npos) << r.err;

  r = RunDsv3({"tokenize", "--tokenizer", dir.Join("nowhere"), "--text", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("nowhere/tokenizer.json"), std::string::npos) << r.err;
}

TEST(TokenizeCli, FlagCombinationsAreUsageErrors) {
  const std::string tok = V3Dir();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"tokenize", "--tokenizer", tok},
        {"tokenize", "--tokenizer", tok, "--text", "a", "--input", "x.jsonl", "--output", "y.jsonl"},
        {"tokenize", "--tokenizer", tok, "--input", "x.jsonl"},
        {"tokenize", "--tokenizer", tok, "--text", "1", "--decode", "--add-bos"},
        {"tokenize", "--text", "a"},
        {"tokenize", "--tokenizer", tok, "--text", "a", "--bogus"}}) {
    auto r = RunDsv3(args);
    EXPECT_EQ(r.exit_code, 2) << args.back() << ": " << r.err;
    EXPECT_NE(r.err.find("dsv3 tokenize: error:"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace dsv3
