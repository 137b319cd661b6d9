// `dsv3 eval` end to end on a model made by `dsv3 init` with the real DeepSeek-V3 tokenizer:
// all four tasks, killed midway and resumed to identical results and logs; model-free modes
// (--write-requests, --samples); bad data reported before model work; regression against the
// committed baseline (what CI runs).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>
#include <vector>

#include "datasets/humaneval.h"
#include "engine/base/file.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

using nlohmann::json;
using testing::RunDsv3;

int64_t CountLines(const std::string& path) {
  std::ifstream f(path);
  return std::count(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>(), '\n');
}

// An MMLU tree under `data` with one subject, astronomy: a one-row dev split and `test_csv`.
bool WriteAstronomy(const testing::TempDir& data, const std::string& test_csv) {
  for (const char* d : {"mmlu", "mmlu/dev", "mmlu/test"}) ::mkdir(data.Join(d).c_str(), 0755);
  return WriteFileAtomic(data.Join("mmlu/dev/astronomy_dev.csv"), "q,a,b,c,d,A\n").ok() &&
         WriteFileAtomic(data.Join("mmlu/test/astronomy_test.csv"), test_csv).ok();
}

class EvalCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DSV3_REQUIRE_SHARED();
    model_ = dir_.Join("model");
    auto r = RunDsv3({"init", "--config", testing::SourceDir() + "/configs/models/tiny-v3-vocab.yaml", "--out", model_,
                      "--seed", "0", "--tokenizer", testing::SharedDir() + "/datasets/tokenizer/deepseek-v3"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // Every task, small: 2 MMLU subjects x 6 questions (48 requests), 6 HumanEval problems x
  // 2 samples at temperature 0.8, the LongBench fixture, perplexity of a fixture text.
  std::vector<std::string> EvalArgs(const std::string& tag) {
    const std::string fx = testing::SourceDir() + "/tests/fixtures";
    return {"eval", "--model-path", model_, "--tasks", "mmlu,humaneval,longbench,perplexity",
            "--data-dir", testing::SharedDir() + "/datasets", "--subjects", "abstract_algebra,astronomy",
            "--limit", "6", "--n-samples", "2", "--temperature", "0.8", "--seed", "11", "--ks", "1,2",
            "--max-gen-tokens", "24", "--longbench-dir", fx + "/longbench", "--perplexity-file",
            fx + "/text/perplexity.txt", "--batch-size", "2", "--max-seq-len", "1024",
            "--output", dir_.Join(tag + ".json"), "--log-samples", dir_.Join(tag + ".samples.jsonl")};
  }
  json Results(const std::string& tag) { return json::parse(ReadFile(dir_.Join(tag + ".json")).value())["results"]; }
  std::string Log(const std::string& tag) { return ReadFile(dir_.Join(tag + ".samples.jsonl")).value(); }

  testing::TempDir dir_;
  std::string model_;
};

TEST_F(EvalCliTest, AllTasksResumeAfterKillToIdenticalResults) {
  auto plain = EvalArgs("plain");
  plain.push_back("--no-cache");
  auto r = RunDsv3(plain);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json a = Results("plain");
  for (const char* task : {"mmlu", "mmlu_stem", "mmlu_astronomy", "humaneval", "longbench", "longbench_trec",
                           "longbench_passage_count_e", "perplexity"})
    EXPECT_TRUE(a.contains(task)) << task;
  EXPECT_EQ(a["mmlu"]["n_samples"], 12);
  EXPECT_EQ(a["humaneval"]["n_samples"], 12);  // 6 problems x 2 samples
  EXPECT_TRUE(a["humaneval"].contains("pass@2"));
  EXPECT_GT(a["perplexity"]["perplexity"].get<double>(), 1.0);

  // Same arguments, same seed: identical logs.
  auto again = EvalArgs("again");
  again.push_back("--no-cache");
  ASSERT_EQ(RunDsv3(again).exit_code, 0);
  EXPECT_EQ(Log("plain"), Log("again"));

  // Start the cached run, kill it once some requests are done, tear its last line.
  auto args = EvalArgs("resumed");
  const std::string cache = dir_.Join("resumed.json.cache.jsonl");
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv;
    std::string bin = testing::Dsv3Binary();
    argv.push_back(bin.data());
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    freopen("/dev/null", "w", stderr);
    freopen("/dev/null", "w", stdout);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (CountLines(cache) < 20 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  EXPECT_FALSE(FileExists(dir_.Join("resumed.json"))) << "no results file from a killed run";
  { std::ofstream(cache, std::ios::app) << "{\"key\":\"deadbeef\",\"resu"; }

  r = RunDsv3(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("torn"), std::string::npos) << r.err;
  EXPECT_EQ(Results("resumed"), a);
  EXPECT_EQ(Log("resumed"), Log("plain"));
}

// What the weights multiply (--activations) changes the scores: results.json records it, and a
// run with other activations does not resume from the cache of the first.
TEST_F(EvalCliTest, ActivationsAreRecordedAndKeyTheCache) {
  const std::vector<std::string> args = {"eval", "--model-path", model_, "--tasks", "mmlu", "--data-dir",
                                         testing::SharedDir() + "/datasets", "--subjects", "astronomy", "--limit", "2",
                                         "--output", dir_.Join("act.json")};
  const std::string cache = dir_.Join("act.json.cache.jsonl");
  auto r = RunDsv3(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(ReadFile(dir_.Join("act.json")).value())["config"]["activations"], "int8");
  const int64_t requests = CountLines(cache);
  ASSERT_GT(requests, 0);
  r = RunDsv3(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(CountLines(cache), requests) << "same settings: every request from the cache";
  auto f32 = args;
  f32.insert(f32.end(), {"--activations", "f32"});
  r = RunDsv3(f32);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(ReadFile(dir_.Join("act.json")).value())["config"]["activations"], "f32");
  EXPECT_EQ(CountLines(cache), 2 * requests) << "other activations: every request computed again";
}

TEST_F(EvalCliTest, WriteRequestsNeedsNoModel) {
  auto r = RunDsv3({"eval", "--data-dir", testing::SharedDir() + "/datasets", "--subjects", "astronomy",
                    "--num-fewshot", "0", "--write-requests", dir_.Join("req.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream f(dir_.Join("req.jsonl"));
  std::string line;
  std::getline(f, line);
  json j = json::parse(line);
  EXPECT_EQ(j["task"], "mmlu_astronomy");
  EXPECT_EQ(j["doc_id"], 0);
  EXPECT_EQ(j["continuation"], " A");
  EXPECT_EQ(j["context"].get<std::string>().rfind(
                "The following are multiple choice questions (with answers) about astronomy.\n\n", 0),
            0u);
}

TEST_F(EvalCliTest, HumanEvalSamplesFileScoresCanonicalSolutions) {
  auto problems = ReadHumanEval(testing::SharedDir() + "/datasets/humaneval/HumanEval.jsonl.gz");
  ASSERT_TRUE(problems.ok());
  std::string samples;
  for (int i = 0; i < 4; ++i)
    samples += json({{"task_id", problems.value()[i].task_id}, {"completion", problems.value()[i].canonical_solution}}).dump() + "\n";
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("samples.jsonl"), samples).ok());
  auto r = RunDsv3({"eval", "--tasks", "humaneval", "--data-dir", testing::SharedDir() + "/datasets", "--limit", "4",
                    "--samples", dir_.Join("samples.jsonl"), "--ks", "1", "--output", dir_.Join("he.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Results("he")["humaneval"]["pass@1"], 1.0);
}

TEST_F(EvalCliTest, BadDataIsReportedBeforeModelWork) {
  testing::TempDir data;
  ASSERT_TRUE(WriteAstronomy(data, "q,a,b,c,A\n"));
  // The model path does not exist: the data error must come first.
  auto r = RunDsv3({"eval", "--model-path", "/nonexistent", "--data-dir", data.path(), "--tasks", "mmlu"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("astronomy_test.csv:1"), std::string::npos) << r.err;
  r = RunDsv3({"eval", "--model-path", "/nonexistent", "--data-dir", data.path(), "--tasks", "longbench"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("longbench"), std::string::npos) << r.err;
  r = RunDsv3({"eval", "--model-path", model_, "--tasks", "mmlu,nosuchtask"});
  EXPECT_EQ(r.exit_code, 2);
}

// Settings the tasks would have refused only after their model work (or not at all), and
// results paths that would have failed at the end, are usage errors up front; the model path
// does not exist, so anything later would say so instead.
TEST_F(EvalCliTest, SettingsAndOutputPathsAreCheckedBeforeModelWork) {
  const std::vector<std::string> base = {"eval", "--model-path", "/nonexistent", "--data-dir",
                                         testing::SharedDir() + "/datasets"};
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--tasks", "humaneval", "--ks", "0"}, "pass@k needs k >= 1"},
      {{"--tasks", "humaneval", "--temperature", "-1"}, "--temperature must be >= 0"},
      {{"--tasks", "humaneval", "--top-p", "2"}, "--top-p must be in (0, 1]"},
      {{"--tasks", "humaneval", "--sandbox-timeout", "0"}, "sandbox: timeout"},
      {{"--tasks", "humaneval", "--max-gen-tokens", "0"}, "--max-gen-tokens must be >= 1"},
      {{"--tasks", ","}, "--tasks names no task"},
      {{"--tasks", "mmlu", "--limit", "-1"}, "--limit must be >= 0"},
      {{"--tasks", "mmlu", "--num-fewshot", "-1"}, "--num-fewshot must be >= 0"},
      {{"--tasks", "perplexity", "--perplexity-stride", "-1"}, "--perplexity-stride must be >= 0"},
      {{"--tasks", "mmlu", "--output", dir_.path()}, "a directory, not a file"},
      {{"--tasks", "mmlu", "--log-samples", dir_.Join("no/such/log.jsonl")}, "no directory"},
  };
  for (const auto& [extra, message] : cases) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = RunDsv3(args);
    EXPECT_EQ(r.exit_code, 2) << message;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
}

// Input the tasks read that had ended in a garbage read or an abort: a --max-seq-len that
// leaves LongBench's prompt no room (its truncation then read past the prompt), a perplexity
// text with a byte that is not UTF-8, a cached result of another form; and an empty MMLU
// test file, which had scored accuracy 0 over no questions.
TEST_F(EvalCliTest, BadInputTheTasksReadIsAnErrorNotACrash) {
  const std::string fx = testing::SourceDir() + "/tests/fixtures";
  auto r = RunDsv3({"eval", "--model-path", model_, "--tasks", "longbench", "--longbench-dir", fx + "/longbench",
                    "--limit", "1", "--max-seq-len", "16", "--no-cache", "--output", dir_.Join("lb.json")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("leaves the prompt no room"), std::string::npos) << r.err;

  ASSERT_TRUE(WriteFileAtomic(dir_.Join("bad.txt"), "fine line\na\xff\xfe b\n").ok());
  r = RunDsv3({"eval", "--model-path", model_, "--tasks", "perplexity", "--perplexity-file", dir_.Join("bad.txt"),
               "--output", dir_.Join("ppl.json")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(dir_.Join("bad.txt") + ":2: not valid UTF-8"), std::string::npos) << r.err;
  EXPECT_FALSE(FileExists(dir_.Join("ppl.json.cache.jsonl")));

  const std::vector<std::string> mmlu = {"eval", "--model-path", model_, "--tasks", "mmlu", "--data-dir",
                                         testing::SharedDir() + "/datasets", "--subjects", "astronomy", "--limit", "1",
                                         "--num-fewshot", "0", "--output", dir_.Join("m.json")};
  r = RunDsv3(mmlu);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string cache = dir_.Join("m.json.cache.jsonl");
  std::string entries = ReadFile(cache).value();
  ASSERT_NE(entries.find("\"result\":{"), std::string::npos);
  size_t at = 0;
  while ((at = entries.find("\"result\":{", at)) != std::string::npos) {
    const size_t end = entries.find('}', at);
    entries.replace(at, end + 1 - at, "\"result\":\"str\"");
    ++at;
  }
  ASSERT_TRUE(WriteFileAtomic(cache, entries).ok());
  r = RunDsv3(mmlu);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(cache + ": a cached result has an unexpected form"), std::string::npos) << r.err;

  testing::TempDir data;
  ASSERT_TRUE(WriteAstronomy(data, ""));
  r = RunDsv3({"eval", "--model-path", "/nonexistent", "--data-dir", data.path(), "--tasks", "mmlu", "--num-fewshot", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("astronomy_test.csv: no questions"), std::string::npos) << r.err;

  // An empty LongBench file: its path (the error had named only the dataset, after the model loaded).
  testing::TempDir lb;
  ASSERT_TRUE(WriteFileAtomic(lb.Join("hotpotqa.jsonl"), "").ok());
  r = RunDsv3({"eval", "--model-path", "/nonexistent", "--tasks", "longbench", "--longbench-dir", lb.path(),
               "--longbench-config-dir", fx + "/longbench/config"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(lb.Join("hotpotqa.jsonl") + ": no records"), std::string::npos) << r.err;
}

TEST_F(EvalCliTest, GenerateFromTextAndChatPrompt) {
  // The chat prompt is BOS <｜User｜> text <｜Assistant｜>: 3 special tokens + the text's own.
  auto tok = RunDsv3({"tokenize", "--tokenizer", model_, "--text", "Hello, world"});
  ASSERT_EQ(tok.exit_code, 0) << tok.err;
  const int64_t text_tokens = std::count(tok.out.begin(), tok.out.end(), ' ') + 1;
  auto r = RunDsv3({"generate", "--model-path", model_, "--prompt", "Hello, world", "--chat", "--max-new-tokens", "5",
                    "--ignore-eos"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("prefill " + std::to_string(text_tokens + 3) + " tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("decode 5 tokens"), std::string::npos) << r.err;
  r = RunDsv3({"generate", "--model-path", model_, "--ids", "1 2", "--chat"});
  EXPECT_EQ(r.exit_code, 2);
}

// What CI runs: a small eval of a model from `dsv3 init`, regressed against the committed
// baseline (tests/fixtures/eval/baseline.json, made by this same command with configs/eval/ci-small.yaml). Random weights
// give near-chance scores, but they are deterministic, so a change in the engine's numbers
// or in a prompt format shows up as a regression.
TEST_F(EvalCliTest, RegressAgainstCommittedBaseline) {
  const std::string fx = testing::SourceDir() + "/tests/fixtures";
  auto r = RunDsv3({"eval", "--model-path", model_, "--config", testing::SourceDir() + "/configs/eval/ci-small.yaml", "--data-dir",
                    testing::SharedDir() + "/datasets", "--longbench-dir", fx + "/longbench", "--perplexity-file",
                    fx + "/text/perplexity.txt", "--output", dir_.Join("ci.json"), "--no-cache"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto g = RunDsv3({"regress", "--results", dir_.Join("ci.json"), "--baseline", fx + "/eval/baseline.json"});
  EXPECT_EQ(g.exit_code, 0) << g.out << g.err;
}

}  // namespace
}  // namespace dsv3
