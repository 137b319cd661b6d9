// The model subcommands end to end: info's parameter counts on the real configs, init →
// logits/generate round trips, determinism of init, usage errors, bad input of every kind,
// interrupted runs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>
#include <vector>

#include "engine/base/file.h"
#include "engine/io/safetensors.h"
#include "engine/model/config.h"
#include "tests/testing/testing.h"
#include "tests/testing/tiny_tokenizer.h"

namespace dsv3 {
namespace {

using nlohmann::json;
using testing::RunDsv3;

json InfoJson(const std::string& config_json_text) {
  testing::TempDir dir;
  EXPECT_TRUE(WriteFileAtomic(dir.Join("config.json"), config_json_text).ok());
  auto r = RunDsv3({"info", "--model-path", dir.path(), "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out);
}

TEST(InfoCli, DeepSeekV3PresetCounts671BAnd37BActivated) {
  std::string hf;
  ASSERT_TRUE(LoadYamlPreset(testing::SourceDir() + "/configs/models/deepseek-v3-671b.yaml", &hf).ok());
  json j = InfoJson(hf);
  EXPECT_EQ(j["params"]["total"].get<int64_t>(), 671026419200);             // 671.0B
  EXPECT_EQ(j["params"]["total_with_mtp"].get<int64_t>(), 684489845504);    // 684.5B
  EXPECT_NEAR(j["params"]["activated"].get<int64_t>() / 1e9, 37.0, 0.5);    // ~37B
  EXPECT_EQ(j["kv_cache"]["values_per_token"].get<int64_t>(), 61 * (512 + 64));
}

TEST(InfoCli, PublishedConfigsFromShared) {
  DSV3_REQUIRE_SHARED();
  const std::string hf = testing::SharedDir() + "/datasets/model-configs/hf/";
  json v3 = InfoJson(ReadFile(hf + "deepseek-v3.config.json").value());
  EXPECT_EQ(v3["params"]["total"].get<int64_t>(), 671026419200);
  EXPECT_EQ(v3["quantization"], "fp8 e4m3, 128x128 blocks");
  json lite = InfoJson(ReadFile(hf + "deepseek-v2-lite.config.json").value());
  EXPECT_NEAR(lite["params"]["total"].get<int64_t>() / 1e9, 15.7, 0.05);
  EXPECT_NEAR(lite["params"]["activated"].get<int64_t>() / 1e9, 2.4, 0.1);
  EXPECT_EQ(lite["params"]["mtp"].get<int64_t>(), 0);
}

TEST(InfoCli, ReportsWeightsByDtype) {
  DSV3_REQUIRE_SHARED();
  auto r = RunDsv3({"info", "--model-path", testing::SharedDir() + "/models/tiny-v3-yarn-bf16", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_GT(j["weights"]["bytes_by_dtype"]["BF16"].get<int64_t>(), 0);
  EXPECT_EQ(j["weights"]["bytes_by_dtype"]["F32"].get<int64_t>(), 2 * 16 * 4 + 16 * 4);  // 3 correction biases
}

TEST(InitCli, DeterministicForASeedAndLoadable) {
  testing::TempDir a, b, c;
  const std::string preset = testing::SourceDir() + "/configs/models/tiny-v3.yaml";
  ASSERT_EQ(RunDsv3({"init", "--config", preset, "--out", a.path(), "--seed", "5", "--threads", "1"}).exit_code, 0);
  ASSERT_EQ(RunDsv3({"init", "--config", preset, "--out", b.path(), "--seed", "5", "--threads", "2"}).exit_code, 0);
  ASSERT_EQ(RunDsv3({"init", "--config", preset, "--out", c.path(), "--seed", "6"}).exit_code, 0);
  EXPECT_EQ(ReadFile(a.Join("model.safetensors")).value(), ReadFile(b.Join("model.safetensors")).value());
  EXPECT_NE(ReadFile(a.Join("model.safetensors")).value(), ReadFile(c.Join("model.safetensors")).value());

  auto r = RunDsv3({"logits", "--model-path", a.path(), "--ids", "0 5 7 9 11", "--decode-from", "2", "--out",
                    a.Join("logits.safetensors")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto f = SafetensorsFile::Open(a.Join("logits.safetensors"));
  ASSERT_TRUE(f.ok());
  const auto* e = f.value()->Find("logits");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape, (Shape{4, 512}));  // rows for positions 1..4

  auto g = RunDsv3({"generate", "--model-path", a.path(), "--ids", "0 5 7", "--max-new-tokens", "6", "--ignore-eos"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(std::count(g.out.begin(), g.out.end(), ' '), 5) << g.out;
  EXPECT_NE(g.err.find("tok/s"), std::string::npos);
}

// `logits --attention` forces an MLA form: both give the same logits (to float32 summation
// order) over a prefill long enough that auto would pick the expanded form; a bad value is
// refused.
TEST(LogitsCli, AttentionFormsAgreeAndBadFormIsRefused) {
  testing::TempDir dir;
  const std::string preset = testing::SourceDir() + "/configs/models/tiny-v3.yaml";
  ASSERT_EQ(RunDsv3({"init", "--config", preset, "--out", dir.path(), "--init", "fan-in", "--dtype", "f32"}).exit_code, 0);
  std::string ids;
  for (int i = 0; i < 96; ++i) ids += std::to_string((i * 37 + 5) % 512) + " ";
  std::vector<std::vector<float>> logits;
  for (const char* form : {"absorbed", "naive", "auto"}) {
    const std::string out = dir.Join(std::string(form) + ".safetensors");
    auto r = RunDsv3({"logits", "--model-path", dir.path(), "--ids", ids, "--attention", form, "--out", out});
    ASSERT_EQ(r.exit_code, 0) << form << ": " << r.err;
    auto f = SafetensorsFile::Open(out);
    ASSERT_TRUE(f.ok());
    logits.push_back(ToF32Vector(f.value()->View(*f.value()->Find("logits"))));
  }
  EXPECT_TRUE(testing::AllClose(logits[0].data(), logits[1].data(), logits[0].size(), 2e-5, "absorbed vs naive"));
  EXPECT_TRUE(testing::AllClose(logits[2].data(), logits[0].data(), logits[0].size(), 2e-5, "auto vs absorbed"));
  auto bad = RunDsv3({"logits", "--model-path", dir.path(), "--ids", "1 2", "--attention", "flash", "--out",
                      dir.Join("x.safetensors")});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--attention"), std::string::npos) << bad.err;
  EXPECT_FALSE(FileExists(dir.Join("x.safetensors")));
}

TEST(InitCli, FanInSchemeGivesTrainedLikeLogitScale) {
  testing::TempDir dir;
  const std::string preset = testing::SourceDir() + "/configs/models/tiny-v3.yaml";
  EXPECT_EQ(RunDsv3({"init", "--config", preset, "--out", dir.path(), "--init", "bogus"}).exit_code, 2);
  ASSERT_EQ(RunDsv3({"init", "--config", preset, "--out", dir.path(), "--init", "fan-in", "--dtype", "f32"}).exit_code, 0);
  ASSERT_EQ(RunDsv3({"logits", "--model-path", dir.path(), "--ids", "0 5 7 9 100 200 300 7 9 100", "--out",
                     dir.Join("l.safetensors")}).exit_code, 0);
  auto f = SafetensorsFile::Open(dir.Join("l.safetensors"));
  ASSERT_TRUE(f.ok());
  std::vector<float> l = ToF32Vector(f.value()->View(*f.value()->Find("logits")));
  double mean = 0, var = 0;
  for (float v : l) mean += v / l.size();
  for (float v : l) var += (v - mean) * (v - mean) / l.size();
  // The golden checkpoints' recipe gives logit std ~2 (../shared/models/README.md); the
  // default N(0, 0.02) init gives ~1e-3.
  EXPECT_GT(std::sqrt(var), 1.0);
  EXPECT_LT(std::sqrt(var), 4.0);
}

TEST(InitCli, ShardedOutputLoads) {
  testing::TempDir dir;
  const std::string preset = testing::SourceDir() + "/configs/models/tiny-v3.yaml";
  auto r = RunDsv3({"init", "--config", preset, "--out", dir.path(), "--shard-size-mb", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(FileExists(dir.Join("model.safetensors.index.json")));
  EXPECT_TRUE(FileExists(dir.Join("model-00002-of-00002.safetensors")));
  auto l = RunDsv3({"logits", "--model-path", dir.path(), "--ids", "3 4", "--out", dir.Join("l.safetensors")});
  EXPECT_EQ(l.exit_code, 0) << l.err;
}

// An output directory whose parent is missing: the error names the directory and says why.
TEST(InitCli, MissingParentDirectoryIsNamedWithTheReason) {
  testing::TempDir dir;
  const std::string out = dir.Join("no/such/parent");
  auto r = RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out", out});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(out + ": cannot create directory: No such file or directory"), std::string::npos) << r.err;
  EXPECT_FALSE(IsDirectory(out));
}

// Rerunning init replaces an earlier init's checkpoint (sharded -> single file, with and then
// without a tokenizer) and leaves none of its files behind; a directory holding anything else
// is refused before a byte is written.
TEST(InitCli, ReplacesAnEarlierInitAndRefusesAnyOtherDirectory) {
  testing::TempDir dir;
  const std::string preset = testing::SourceDir() + "/configs/models/tiny-v3.yaml";
  const std::string out = dir.Join("m");
  ASSERT_EQ(RunDsv3({"init", "--config", preset, "--out", out, "--shard-size-mb", "1"}).exit_code, 0);
  ASSERT_TRUE(FileExists(JoinPath(out, "model-00002-of-00002.safetensors")));
  ASSERT_TRUE(WriteFileAtomic(JoinPath(out, "tokenizer_config.json"), "{}").ok());
  auto r = RunDsv3({"init", "--config", preset, "--out", out, "--seed", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(FileExists(JoinPath(out, "model.safetensors")));
  for (const char* stale : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                            "model.safetensors.index.json", "tokenizer_config.json"})
    EXPECT_FALSE(FileExists(JoinPath(out, stale))) << stale;
  EXPECT_EQ(RunDsv3({"generate", "--model-path", out, "--ids", "1 2", "--max-new-tokens", "2"}).exit_code, 0);
  // A temp file left by a run killed outright (SIGKILL) does not stop the next, which removes it.
  ASSERT_TRUE(WriteFileAtomic(JoinPath(out, "model.safetensors.tmp.4242.17"), "partial").ok());
  r = RunDsv3({"init", "--config", preset, "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(FileExists(JoinPath(out, "model.safetensors.tmp.4242.17")));

  const std::string other = dir.Join("other");
  ASSERT_EQ(::mkdir(other.c_str(), 0755), 0);
  ASSERT_TRUE(WriteFileAtomic(JoinPath(other, "generation_config.json"), "{}").ok());
  r = RunDsv3({"init", "--config", preset, "--out", other});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(other + " holds generation_config.json, which is not a file of an init checkpoint"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(FileExists(JoinPath(other, "model.safetensors")));
  EXPECT_FALSE(FileExists(JoinPath(other, "config.json")));
}

// A tokenizer with ids past the model's vocab_size is refused where the two are paired: at
// init --tokenizer (nothing written) and at generate --tokenizer; one with fewer ids (the
// model's rows are padding, as DeepSeek-V3's 129280 for 128815 ids) is fine.
TEST(InitCli, TokenizerWithIdsPastTheVocabularyIsRefused) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.Join("tokenizer.json"), testing::TinyTokenizerJson()).ok());  // ids 0-261
  auto text = ReadFile(testing::SourceDir() + "/configs/models/tiny-v3.yaml");
  ASSERT_TRUE(text.ok());
  std::string preset = text.value();
  const size_t at = preset.find("vocab_size: 512");
  ASSERT_NE(at, std::string::npos);
  preset.replace(at, 15, "vocab_size: 256");
  ASSERT_TRUE(WriteFileAtomic(dir.Join("v256.yaml"), preset).ok());

  auto r = RunDsv3({"init", "--config", dir.Join("v256.yaml"), "--out", dir.Join("small"), "--tokenizer", dir.path()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("the tokenizer in " + dir.path() + " has ids up to 261, past the vocab_size 256 of the model in " +
                       dir.Join("v256.yaml")),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(FileExists(dir.Join("small")));

  ASSERT_EQ(RunDsv3({"init", "--config", dir.Join("v256.yaml"), "--out", dir.Join("small")}).exit_code, 0);
  r = RunDsv3({"generate", "--model-path", dir.Join("small"), "--tokenizer", dir.path(), "--prompt", "hello"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("has ids up to 261, past the vocab_size 256 of the model in " + dir.Join("small")),
            std::string::npos)
      << r.err;
  r = RunDsv3({"eval", "--model-path", dir.Join("small"), "--tokenizer", dir.path(), "--tasks", "perplexity",
               "--perplexity-file", testing::SourceDir() + "/tests/fixtures/text/perplexity.txt", "--output",
               dir.Join("results.json")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("has ids up to 261, past the vocab_size 256"), std::string::npos) << r.err;
  EXPECT_FALSE(FileExists(dir.Join("results.json")));

  r = RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out", dir.Join("big"),
               "--tokenizer", dir.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunDsv3({"generate", "--model-path", dir.Join("big"), "--prompt", "hello", "--max-new-tokens", "2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(RunDsv3({"nosuchcommand"}).exit_code, 2);
  EXPECT_EQ(RunDsv3({"logits", "--bogus-flag"}).exit_code, 2);
  EXPECT_EQ(RunDsv3({"generate", "--model-path", "/nonexistent", "--ids", "1"}).exit_code, 2);
  EXPECT_EQ(RunDsv3({"generate", "--model-path", "/x", "--ids", "1 abc"}).exit_code, 2);
  testing::TempDir dir;
  EXPECT_TRUE(WriteFileAtomic(dir.Join("opts.yaml"), "max-new-tokens: 3\nunknown-key: 1\n").ok());
  auto r = RunDsv3({"generate", "--config", dir.Join("opts.yaml"), "--model-path", "/x", "--ids", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown-key"), std::string::npos) << r.err;
  // A negative unsigned value (llama.cpp's --seed -1) had wrapped to 2^64 - 1, silently.
  r = RunDsv3({"generate", "--model-path", "/x", "--ids", "1", "--seed", "-1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--seed must be an integer >= 0, got \"-1\""), std::string::npos) << r.err;
  EXPECT_TRUE(WriteFileAtomic(dir.Join("seed.yaml"), "seed: -3\n").ok());
  r = RunDsv3({"generate", "--config", dir.Join("seed.yaml"), "--model-path", "/x", "--ids", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(dir.Join("seed.yaml") + ": --seed must be an integer >= 0, got \"-3\""), std::string::npos)
      << r.err;
  r = RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out", dir.Join("m"),
               "--seed=-2"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_FALSE(FileExists(dir.Join("m")));
}

TEST(Cli, YamlOptionsApplyAndCommandLineWins) {
  testing::TempDir dir;
  ASSERT_EQ(RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out", dir.path()}).exit_code, 0);
  ASSERT_TRUE(WriteFileAtomic(dir.Join("opts.yaml"), "max-new-tokens: 3\nignore-eos: true\nmodel-path: " + dir.path() + "\n").ok());
  auto r = RunDsv3({"generate", "--config", dir.Join("opts.yaml"), "--ids", "1 2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ' '), 2) << r.out;  // 3 tokens
  r = RunDsv3({"generate", "--config", dir.Join("opts.yaml"), "--ids", "1 2", "--max-new-tokens", "5"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ' '), 4) << r.out;
}

// A config whose sizes are absurd stops at the field, fast (1e9 layers had planned a tensor
// table until memory ran out, even for `info` on a config alone).
TEST(InfoCli, AbsurdConfigSizesAreRefusedAtTheField) {
  std::string hf;
  ASSERT_TRUE(LoadYamlPreset(testing::SourceDir() + "/configs/models/tiny-v3.yaml", &hf).ok());
  for (const auto& [field, value] : std::vector<std::pair<std::string, int64_t>>{
           {"num_hidden_layers", 1000000000}, {"n_routed_experts", int64_t{1} << 31}, {"hidden_size", 1000000}}) {
    json c = json::parse(hf);
    c[field] = value;
    testing::TempDir dir;
    ASSERT_TRUE(WriteFileAtomic(dir.Join("config.json"), c.dump()).ok());
    auto r = RunDsv3({"info", "--model-path", dir.path()});
    EXPECT_EQ(r.exit_code, 2) << field;
    EXPECT_NE(r.err.find("field \"" + field + "\": " + std::to_string(value) + " is more than dsv3 accepts"),
              std::string::npos)
        << r.err;
  }
  // Past int64: a wrapped unsigned had read as -9223372036854775808, a double cast was undefined.
  for (const json& value : {json(uint64_t{1} << 63), json(1e30)}) {
    json c = json::parse(hf);
    c["hidden_size"] = value;
    testing::TempDir dir;
    ASSERT_TRUE(WriteFileAtomic(dir.Join("config.json"), c.dump()).ok());
    auto r = RunDsv3({"info", "--model-path", dir.path()});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("field \"hidden_size\" is out of range, got " + value.dump()), std::string::npos) << r.err;
  }
}

// Small lies in the config or the directory that had passed: an end-of-sequence id past the
// vocabulary, an index whose shard is missing (info had said "config only", exit 0), a
// --device that names no device, a KV-cache length below one, a directory as logits' --out.
TEST(InfoCli, MismatchesInTheDirectoryOrOptionsAreErrors) {
  std::string hf;
  ASSERT_TRUE(LoadYamlPreset(testing::SourceDir() + "/configs/models/tiny-v3.yaml", &hf).ok());
  json c = json::parse(hf);
  c["eos_token_id"] = c["vocab_size"].get<int64_t>();
  testing::TempDir cfg;
  ASSERT_TRUE(WriteFileAtomic(cfg.Join("config.json"), c.dump()).ok());
  auto r = RunDsv3({"info", "--model-path", cfg.path()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("field \"eos_token_id\": 512 is not below vocab_size 512"), std::string::npos) << r.err;

  testing::TempDir dir;
  ASSERT_EQ(RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out", dir.path(),
                     "--shard-size-mb", "1"}).exit_code, 0);
  r = RunDsv3({"info", "--model-path", dir.path(), "--max-seq-len", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--max-seq-len must be >= 1"), std::string::npos) << r.err;
  r = RunDsv3({"logits", "--model-path", dir.path(), "--ids", "1 2", "--out", dir.path()});
  EXPECT_EQ(r.exit_code, 2);  // had been 1, after the model's work
  EXPECT_NE(r.err.find("--out " + dir.path() + ": a directory, not a file"), std::string::npos) << r.err;
  for (const std::string device : {"cuda:abc", "cuda:", "cuda:-1", "cuda:7-0", "gpu"}) {
    r = RunDsv3({"logits", "--model-path", dir.path(), "--ids", "1 2", "--device", device, "--out", dir.Join("l.safetensors")});
    EXPECT_EQ(r.exit_code, 2) << device;
    EXPECT_NE(r.err.find("--device must be cpu, cuda:N or cuda:A-B"), std::string::npos) << r.err;
  }
  ASSERT_EQ(::unlink(dir.Join("model-00002-of-00002.safetensors").c_str()), 0);
  r = RunDsv3({"info", "--model-path", dir.path()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("model-00002-of-00002.safetensors: no such file"), std::string::npos) << r.err;
}

// A --tokenizer that cannot be read is found before anything is written; a directory given
// as the preset is named as such.
TEST(InitCli, BadTokenizerOrPresetLeavesNothingBehind) {
  testing::TempDir dir;
  const std::string out = dir.Join("out");
  auto r = RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out", out,
                    "--tokenizer", dir.Join("no-such-tokenizer")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no-such-tokenizer/tokenizer.json: no such file"), std::string::npos) << r.err;
  EXPECT_FALSE(FileExists(out));
  r = RunDsv3({"init", "--config", dir.path(), "--out", out});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(dir.path() + ": a directory, not a model preset"), std::string::npos) << r.err;
  EXPECT_FALSE(FileExists(out));
}

// What used to be ignored or to abort: words past the options (an unquoted --ids list ran
// with its first id), options files holding nested values or naming a directory, a YAML
// value boost rejects (named with its file), --threads past what a pool may start.
TEST(Cli, StrayWordsAndBadOptionFilesAreUsageErrors) {
  testing::TempDir dir;
  ASSERT_EQ(RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3.yaml", "--out", dir.path()}).exit_code, 0);
  auto r = RunDsv3({"logits", "--model-path", dir.path(), "--ids", "0", "5", "7", "--out", dir.Join("l.safetensors")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unexpected argument \"5\""), std::string::npos) << r.err;
  EXPECT_FALSE(FileExists(dir.Join("l.safetensors")));
  const std::vector<std::pair<std::string, std::string>> files = {
      {"nested.yaml", "max-new-tokens: [[1]]\n"},
      {"key.yaml", "? [a, b]\n: 1\n"},
      {"value.yaml", "max-new-tokens: abc\n"},
  };
  for (const auto& [name, text] : files) {
    ASSERT_TRUE(WriteFileAtomic(dir.Join(name), text).ok());
    r = RunDsv3({"generate", "--config", dir.Join(name), "--model-path", dir.path(), "--ids", "1"});
    EXPECT_EQ(r.exit_code, 2) << name;
    EXPECT_NE(r.err.find(dir.Join(name) + ": "), std::string::npos) << r.err;
  }
  r = RunDsv3({"generate", "--config", dir.path(), "--model-path", dir.path(), "--ids", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(dir.path() + ": a directory, not an options file"), std::string::npos) << r.err;
  r = RunDsv3({"generate", "--model-path", dir.path(), "--ids", "1", "--threads", "100000"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--threads must be at most"), std::string::npos) << r.err;
  r = RunDsv3({"generate", "--model-path", dir.path(), "--ids", "1", "--top-p", "nan"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--top-p must be in (0, 1]"), std::string::npos) << r.err;
  // A switch set to false in YAML is a switch left off (it had been a usage error).
  ASSERT_TRUE(WriteFileAtomic(dir.Join("off.yaml"), "ignore-eos: false\nmax-new-tokens: 2\n").ok());
  r = RunDsv3({"generate", "--config", dir.Join("off.yaml"), "--model-path", dir.path(), "--ids", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// A NaN weight makes every logit NaN: compare and generate say so (compare's KL had read
// kl_max 0), logits warns.
TEST(CompareCli, NonFiniteLogitsAreAnError) {
  testing::TempDir good, bad;
  const std::string preset = testing::SourceDir() + "/configs/models/tiny-v3.yaml";
  ASSERT_EQ(RunDsv3({"init", "--config", preset, "--out", good.path(), "--dtype", "f32"}).exit_code, 0);
  ASSERT_EQ(RunDsv3({"init", "--config", preset, "--out", bad.path(), "--dtype", "f32"}).exit_code, 0);
  const std::string path = bad.Join("model.safetensors");
  uint64_t begin = 0;
  {
    auto f = SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok());
    const SafetensorsEntry* e = f.value()->Find("model.layers.0.mlp.gate_proj.weight");
    ASSERT_NE(e, nullptr);
    begin = e->begin;
  }
  std::string bytes = ReadFile(path).value();
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  const float nan = std::nanf("");
  std::memcpy(bytes.data() + 8 + header + begin, &nan, sizeof nan);
  ASSERT_TRUE(WriteFileAtomic(path, bytes).ok());
  ASSERT_TRUE(WriteFileAtomic(good.Join("ids.txt"), "1 2 3 4 5 6").ok());
  auto r = RunDsv3({"compare", "--model-path", bad.path(), "--reference", good.path(), "--ids-file", good.Join("ids.txt"),
                    "--positions", "4", "--seq-len", "4", "--decode-tokens", "0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("logits at position 0 are not finite"), std::string::npos) << r.err;
  r = RunDsv3({"compare", "--model-path", good.path(), "--reference", good.path(), "--ids-file", good.Join("ids.txt"),
               "--positions", "4", "--seq-len", "4", "--decode-tokens", "0"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = RunDsv3({"compare", "--model-path", good.path(), "--reference", good.path(), "--ids-file", good.Join("ids.txt"),
               "--text-file", good.Join("ids.txt"), "--tokenizer", good.path()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("give one of --ids-file and --text-file"), std::string::npos) << r.err;
  // generate had printed token 0 for every step; logits writes them, and says so.
  r = RunDsv3({"generate", "--model-path", bad.path(), "--ids", "1 2 3", "--max-new-tokens", "3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("the logits hold NaN or Inf values"), std::string::npos) << r.err;
  r = RunDsv3({"logits", "--model-path", bad.path(), "--ids", "1 2", "--out", bad.Join("l.safetensors")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: 1024 of 1024 logits are NaN or Inf"), std::string::npos) << r.err;
}

// Starts dsv3 with `args` (output to /dev/null) and returns its pid.
pid_t SpawnDsv3(std::vector<std::string> args) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::string bin = testing::Dsv3Binary();
    std::vector<char*> argv = {bin.data()};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    (void)!freopen("/dev/null", "w", stdout);
    (void)!freopen("/dev/null", "w", stderr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// The names in `dir` that contain `part`.
std::vector<std::string> NamesWith(const std::string& dir, const std::string& part) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().filename().string().find(part) != std::string::npos) found.push_back(e.path().filename().string());
  return found;
}

// Sends `sig` once `ready` holds (or after 60 s) and returns the wait status.
template <typename Ready>
int InterruptWhen(pid_t pid, int sig, const Ready& ready) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!ready() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  kill(pid, sig);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// Ctrl-C or a kill by SIGTERM mid-write: the temp shard of init and quantize's staging
// directory are removed (they had stayed: a 5 GB shard's temp, a whole staged checkpoint), and
// the process still dies of the signal.
TEST(InterruptCli, SignalsRemoveTempFilesAndStaging) {
  testing::TempDir dir;
  const std::string preset = testing::SourceDir() + "/configs/models/bench-v3-tiny.yaml";
  const std::string model = dir.Join("m");
  int status = InterruptWhen(SpawnDsv3({"init", "--config", preset, "--out", model, "--threads", "1"}), SIGTERM,
                             [&] { return !NamesWith(model, ".tmp.").empty(); });
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "init finished before it could be interrupted";
  EXPECT_EQ(NamesWith(model, ".tmp."), std::vector<std::string>{});

  ASSERT_EQ(RunDsv3({"init", "--config", preset, "--out", model}).exit_code, 0);
  status = InterruptWhen(SpawnDsv3({"quantize", "--model-path", model, "--format", "int8", "--out", dir.Join("q"),
                                    "--threads", "1"}),
                         SIGINT, [&] {
                           const auto stage = NamesWith(dir.path(), ".dsv3-partial");
                           return !stage.empty() && !NamesWith(dir.Join(stage.front()), ".tmp.").empty();
                         });
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << "quantize finished before it could be interrupted";
  EXPECT_EQ(NamesWith(dir.path(), ".dsv3-partial"), std::vector<std::string>{});
  EXPECT_FALSE(FileExists(dir.Join("q")));
}

}  // namespace
}  // namespace dsv3
