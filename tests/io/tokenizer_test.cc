// Tokenizer tests: a small synthetic tokenizer.json (merges, added tokens, malformed
// variants, invalid UTF-8, streaming decode) and the real DeepSeek-V3 tokenizer against the
// shared encode cases and llama.cpp's vectors.
#include "engine/io/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "engine/base/file.h"
#include "tests/testing/testing.h"
#include "tests/testing/tiny_tokenizer.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;

// tests/testing/tiny_tokenizer.h: ids 0-261, merges he ll hell hello, <|bos|> and <|sep|>.
json TinyTokenizer() { return json::parse(testing::TinyTokenizerJson()); }

Tokenizer LoadTiny(const json& j = TinyTokenizer(), const std::string& config = "") {
  auto tok = Tokenizer::FromJson(j.dump(), config);
  EXPECT_TRUE(tok.ok()) << tok.status().message();
  return std::move(tok).value();
}

std::vector<int32_t> Enc(const Tokenizer& tok, std::string_view text, bool special = false) {
  auto ids = tok.Encode(text, special);
  EXPECT_TRUE(ids.ok()) << ids.status().message();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

std::string Dec(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special = false) {
  auto s = tok.Decode(ids, skip_special);
  return s.ok() ? s.value() : "<error: " + s.status().message() + ">";
}

std::string DecBytes(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  auto s = tok.DecodeBytes(ids);
  return s.ok() ? s.value() : "<error: " + s.status().message() + ">";
}

TEST(TokenizerTiny, AppliesMergesAndAddedTokens) {
  Tokenizer tok = LoadTiny();
  EXPECT_EQ(Enc(tok, "hello"), (std::vector<int32_t>{259}));
  EXPECT_EQ(Enc(tok, " hello"), (std::vector<int32_t>{32, 259}));  // no merge involves the space
  EXPECT_EQ(Enc(tok, "hel"), (std::vector<int32_t>{256, 'l'}));
  EXPECT_EQ(Enc(tok, "<|bos|>hello<|sep|>x"), (std::vector<int32_t>{260, 259, 261, 'x'}));
  EXPECT_EQ(Enc(tok, "<|bos|"), (std::vector<int32_t>{'<', '|', 'b', 'o', 's', '|'}));  // lookalike
  const std::vector<int32_t> ids = {260, 259, 261, 32};
  EXPECT_EQ(Dec(tok, ids), "<|bos|>hello<|sep|> ");
  EXPECT_EQ(Dec(tok, ids, /*skip_special_tokens=*/true), "hello<|sep|> ");
  EXPECT_FALSE(tok.Decode(std::vector<int32_t>{262}).ok());
  EXPECT_FALSE(tok.Decode(std::vector<int32_t>{-1}).ok());
  EXPECT_EQ(tok.vocab_size(), 262);
}

TEST(TokenizerTiny, BosPolicyFollowsConfig) {
  const std::string config = R"({"add_bos_token": true, "bos_token": {"content": "<|bos|>"}, "eos_token": "<|sep|>"})";
  Tokenizer tok = LoadTiny(TinyTokenizer(), config);
  EXPECT_EQ(tok.bos_id(), 260);
  EXPECT_EQ(tok.eos_id(), 261);
  EXPECT_EQ(Enc(tok, "hello", true), (std::vector<int32_t>{260, 259}));
  EXPECT_EQ(Enc(tok, "hello", false), (std::vector<int32_t>{259}));
  auto bad = Tokenizer::FromJson(TinyTokenizer().dump(), R"({"add_bos_token": true})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bos_token"), std::string::npos) << bad.status().message();
}

struct Malformed {
  const char* name;
  std::function<void(json*)> mutate;
  const char* needle;  // the error must name this
};

TEST(TokenizerTiny, MalformedTokenizerJsonIsAClearError) {
  const std::vector<Malformed> cases = {
      {"missing model", [](json* j) { j->erase("model"); }, "missing \"model\""},
      {"unknown model type", [](json* j) { (*j)["model"]["type"] = "Unigram"; }, "Unigram"},
      {"unknown pre-tokenizer", [](json* j) { (*j)["pre_tokenizer"]["pretokenizers"][0]["type"] = "Whitespace"; },
       "Whitespace"},
      {"invalid regex", [](json* j) { (*j)["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(\\p{L}"; },
       "invalid regex"},
      {"unsupported Split behavior",
       [](json* j) { (*j)["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithNext"; }, "MergedWithNext"},
      {"merge with unknown token", [](json* j) { (*j)["model"]["merges"].push_back("h Ω"); }, "\"Ω\" is not in model.vocab"},
      {"merge result not in vocab", [](json* j) { (*j)["model"]["merges"].push_back("o h"); }, "\"oh\""},
      {"missing byte token", [](json* j) { (*j)["model"]["vocab"].erase("a"); }, "byte 97"},
      {"unknown normalizer", [](json* j) { (*j)["normalizer"] = {{"type", "NFKC"}}; }, "NFKC"},
      {"unknown decoder", [](json* j) { (*j)["decoder"] = {{"type", "WordPiece"}}; }, "WordPiece"},
      {"no decoder", [](json* j) { j->erase("decoder"); }, "decoder"},
      {"dropout", [](json* j) { (*j)["model"]["dropout"] = 0.1; }, "dropout"},
      {"added token lstrip", [](json* j) { (*j)["added_tokens"][0]["lstrip"] = true; }, "lstrip"},
      {"prefix space", [](json* j) { (*j)["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; },
       "add_prefix_space"},
  };
  for (const Malformed& c : cases) {
    json j = TinyTokenizer();
    c.mutate(&j);
    auto tok = Tokenizer::FromJson(j.dump(), "");
    ASSERT_FALSE(tok.ok()) << c.name << " loaded";
    EXPECT_EQ(tok.status().code(), StatusCode::kInvalidInput) << c.name;
    EXPECT_NE(tok.status().message().find(c.needle), std::string::npos) << c.name << ": " << tok.status().message();
    EXPECT_EQ(tok.status().message().rfind("tokenizer.json: ", 0), 0u) << tok.status().message();
  }
  auto not_json = Tokenizer::FromJson("{\"model\": [", "");
  ASSERT_FALSE(not_json.ok());
  EXPECT_NE(not_json.status().message().find("not valid JSON"), std::string::npos);
}

// The expected splits of a UTF-8 string into code points, for checking stream chunks.
bool IsValidUtf8(const std::string& s) { return Utf8Lossy(s) == s && s.find("\xEF\xBF\xBD") == std::string::npos; }

TEST(TokenizerTiny, InvalidUtf8IsEncodedBytewise) {
  Tokenizer tok = LoadTiny();
  const std::string text = "\xff\xfehello \xc3 \xe4\xb8\x80\xe4\xb8 \xed\xa0\x80 \xf4\x90\x80\x80\x80";
  std::vector<int32_t> ids = Enc(tok, text);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(DecBytes(tok, ids), text);
  // Lossy decode: one U+FFFD per maximal invalid subpart, as Rust's from_utf8_lossy.
  EXPECT_EQ(Dec(tok, std::vector<int32_t>{0xff, 'a', 0xe4, 0xb8, 'b', 0xed, 0xa0}),
            "\xEF\xBF\xBD" "a" "\xEF\xBF\xBD" "b" "\xEF\xBF\xBD\xEF\xBF\xBD");
}

// Feeds ids one at a time; every chunk must be whole characters and the sum must be Decode.
void CheckStream(const Tokenizer& tok, const std::vector<int32_t>& ids, int* empty_pushes) {
  StreamDecoder stream(&tok);
  std::string all;
  for (int32_t id : ids) {
    std::string chunk;
    ASSERT_TRUE(stream.Push(id, &chunk).ok());
    EXPECT_TRUE(IsValidUtf8(chunk)) << "chunk ends inside a character";
    if (chunk.empty()) ++*empty_pushes;
    all += chunk;
  }
  stream.Finish(&all);
  EXPECT_EQ(all, Dec(tok, ids));
}

// A pattern that backtracks without end hits PCRE2's match limit: an error that names the
// tokenizer file and the pattern, not a hang.
TEST(TokenizerTiny, CatastrophicRegexIsAnErrorNamingTheFile) {
  json j = TinyTokenizer();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(a+)+$";
  auto tok = Tokenizer::FromJson(j.dump(), "", "dir/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  auto ids = tok->Encode(std::string(40, 'a') + "b");
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().message().rfind("dir/tokenizer.json: pre-tokenizer regex \"(a+)+$\" failed: ", 0), 0u)
      << ids.status().message();
}

TEST(TokenizerTiny, StreamDecodeHoldsPartialCharacters) {
  Tokenizer tok = LoadTiny();
  const std::string text = "héllo 你好 😀 <|bos|> ok";  // multi-byte characters are byte tokens here
  int empty = 0;
  CheckStream(tok, Enc(tok, text), &empty);
  EXPECT_GE(empty, 1 + 2 * 2 + 3);  // é, 你, 好, 😀 each wait for their last byte
  // A dangling lead byte at the end becomes U+FFFD only at Finish.
  StreamDecoder stream(&tok);
  std::string out;
  ASSERT_TRUE(stream.Push('a', &out).ok());
  ASSERT_TRUE(stream.Push(0xe4, &out).ok());
  EXPECT_EQ(out, "a");
  stream.Finish(&out);
  EXPECT_EQ(out, "a\xEF\xBF\xBD");
  std::string ignored;
  EXPECT_FALSE(stream.Push(99999, &ignored).ok());
}

// ---- the real DeepSeek-V3 tokenizer ---------------------------------------------------------

std::string V3Dir() { return testing::SharedDir() + "/datasets/tokenizer/deepseek-v3"; }

struct EncodeCase {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<EncodeCase> ReadEncodeCases() {
  std::ifstream in(V3Dir() + "/encode_cases.jsonl");
  std::vector<EncodeCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line);
    cases.push_back({j["text"].get<std::string>(), j["ids"].get<std::vector<int32_t>>()});
  }
  return cases;
}

std::string Show(const std::vector<int32_t>& ids) {
  std::ostringstream os;
  for (int32_t id : ids) os << id << ' ';
  return os.str();
}

TEST(TokenizerDeepSeekV3, AllEncodeCasesMatchAndRoundTrip) {
  DSV3_REQUIRE_SHARED();
  auto tok = Tokenizer::Load(V3Dir());
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  const std::vector<EncodeCase> cases = ReadEncodeCases();
  ASSERT_EQ(cases.size(), 324u);
  int encode_ok = 0, decode_ok = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<int32_t> ids = Enc(*tok, cases[i].text);
    if (ids == cases[i].ids) ++encode_ok;
    else ADD_FAILURE() << "case " << i << " \"" << cases[i].text.substr(0, 80) << "\"\n  want " << Show(cases[i].ids)
                       << "\n  got  " << Show(ids);
    auto text = tok->Decode(cases[i].ids);
    if (text.ok() && *text == cases[i].text) ++decode_ok;
    else ADD_FAILURE() << "case " << i << " does not decode back to its text";
  }
  EXPECT_EQ(encode_ok, 324);
  EXPECT_EQ(decode_ok, 324);
}

TEST(TokenizerDeepSeekV3, CachedAndUncachedBpeAgree) {
  DSV3_REQUIRE_SHARED();
  auto cached = Tokenizer::Load(V3Dir());
  auto plain = Tokenizer::Load(V3Dir(), TokenizerOptions{.word_cache = false});
  ASSERT_TRUE(cached.ok() && plain.ok());
  for (int pass = 0; pass < 2; ++pass)  // second pass is served from the cache
    for (const EncodeCase& c : ReadEncodeCases()) ASSERT_EQ(Enc(*cached, c.text), Enc(*plain, c.text)) << c.text;
}

TEST(TokenizerDeepSeekV3, ConcurrentEncodeSharesTheCacheSafely) {
  DSV3_REQUIRE_SHARED();
  auto tok = Tokenizer::Load(V3Dir());
  ASSERT_TRUE(tok.ok());
  const std::vector<EncodeCase> cases = ReadEncodeCases();
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = t; i < cases.size() + t; ++i) {  // each thread starts elsewhere
          const EncodeCase& c = cases[i % cases.size()];
          auto ids = tok->Encode(c.text);
          if (!ids.ok() || *ids != c.ids) ++mismatches[t];
        }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(TokenizerDeepSeekV3, SpecialTokensAndBos) {
  DSV3_REQUIRE_SHARED();
  auto tok = Tokenizer::Load(V3Dir());
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_EQ(tok->eos_id(), 1);
  EXPECT_EQ(tok->vocab_size(), 128815);
  EXPECT_EQ(tok->TokenId("<｜Assistant｜>"), 128804);
  EXPECT_EQ(Dec(*tok, {*tok->TokenId("Ġt")}), " t");  // vocab strings are byte-mapped
  EXPECT_FALSE(tok->TokenId("no such token").has_value());
  EXPECT_TRUE(tok->IsSpecial(0));
  EXPECT_FALSE(tok->IsSpecial(128804));  // chat markers are added but not "special" in V3
  EXPECT_EQ(Enc(*tok, "Hello world", true), (std::vector<int32_t>{0, 19923, 2058}));  // add_bos_token: true
  EXPECT_EQ(Enc(*tok, "Hello world"), (std::vector<int32_t>{19923, 2058}));
  const std::vector<int32_t> ids = Enc(*tok, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜end▁of▁sentence｜>");
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids[1], 128803);
  EXPECT_EQ(Dec(*tok, ids, /*skip_special_tokens=*/true), "<｜User｜>Hi");  // User is not "special"
  const std::string bad = "caf\xc3 \xff\xfe 日\xe6\x9c";
  EXPECT_EQ(DecBytes(*tok, Enc(*tok, bad)), bad);
}

TEST(TokenizerDeepSeekV3, StreamDecodeOfRealTokens) {
  DSV3_REQUIRE_SHARED();
  auto tok = Tokenizer::Load(V3Dir());
  ASSERT_TRUE(tok.ok());
  // Rare CJK and emoji are split into byte tokens by the V3 vocabulary.
  int empty = 0;
  for (const EncodeCase& c : ReadEncodeCases()) CheckStream(*tok, c.ids, &empty);
  EXPECT_GT(empty, 0) << "no case split a character across tokens";
}

// llama.cpp's vectors are for the DeepSeek-LLM/Coder vocabularies (102,400 ids), whose
// tokenizer files we do not have, so their ids cannot be checked against the V3 vocabulary.
// What they still give: 46 hard strings (whitespace runs, scripts, emoji ZWJ, digit runs)
// that must encode with V3 without error and decode back exactly.
TEST(TokenizerDeepSeekV3, LlamaCppVectorStringsRoundTrip) {
  DSV3_REQUIRE_SHARED();
  auto tok = Tokenizer::Load(V3Dir());
  ASSERT_TRUE(tok.ok());
  const std::string dir = testing::SharedDir() + "/datasets/tokenizer/llamacpp-vectors/";
  for (const char* vocab : {"deepseek-llm", "deepseek-coder"}) {
    auto inp = ReadFile(dir + "ggml-vocab-" + vocab + ".gguf.inp");
    auto out = ReadFile(dir + "ggml-vocab-" + vocab + ".gguf.out");
    ASSERT_TRUE(inp.ok() && out.ok());
    std::vector<std::string> texts;
    const std::string sep = "\n__ggml_vocab_test__\n";
    for (size_t pos = 0, end; (end = inp->find(sep, pos)) != std::string::npos; pos = end + sep.size())
      texts.push_back(inp->substr(pos, end - pos));
    ASSERT_EQ(texts.size(), 46u) << vocab;
    EXPECT_EQ(std::count(out->begin(), out->end(), '\n'), 46) << vocab << ": one id line per string";
    for (const std::string& t : texts) {
      std::vector<int32_t> ids = Enc(*tok, t);
      EXPECT_EQ(Dec(*tok, ids), t);
    }
  }
}

}  // namespace
}  // namespace dsv3
