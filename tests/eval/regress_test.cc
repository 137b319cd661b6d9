// dsv3 regress through the CLI (exit codes 0 / 3 / 2) and the comparison rules.
#include "eval/regress.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

const char* kBaseline = R"({
  "results": {
    "mmlu": {"alias": "mmlu", "acc": 0.60, "acc_stderr": 0.004, "n_samples": 10601},
    "humaneval": {"pass@1": 0.50},
    "perplexity": {"perplexity": 8.0, "bits_per_byte": 0.9},
    "arc": {"acc,none": 0.5, "acc_stderr,none": 0.02}
  },
  "config": {"seed": 0}
})";

std::string Results(double acc, double pass1, double ppl, double arc = 0.5) {
  return R"({"results": {"mmlu": {"acc": )" + std::to_string(acc) +
         R"(, "acc_stderr": 0.004, "n_samples": 10}, "humaneval": {"pass@1": )" +
         std::to_string(pass1) + R"(}, "perplexity": {"perplexity": )" + std::to_string(ppl) +
         R"(, "bits_per_byte": 0.9}, "arc": {"acc,none": )" + std::to_string(arc) + "}}}";
}

class RegressCli : public ::testing::Test {
 protected:
  int Run(const std::string& results, const std::string& baseline = kBaseline,
          std::vector<std::string> extra = {}) {
    std::ofstream(dir_.Join("results.json")) << results;
    std::ofstream(dir_.Join("baseline.json")) << baseline;
    std::vector<std::string> args = {"regress", "--results", dir_.Join("results.json"),
                                     "--baseline", dir_.Join("baseline.json")};
    args.insert(args.end(), extra.begin(), extra.end());
    last_ = testing::RunDsv3(args);
    return last_.exit_code;
  }
  testing::TempDir dir_;
  testing::RunResult last_;
};

TEST_F(RegressCli, AllHoldExitsZero) {
  // Drops of 0.007 (mmlu) and 0.005 (humaneval) are inside the 0.01 tolerance.
  EXPECT_EQ(Run(Results(0.593, 0.495, 8.0)), 0) << last_.err;
  EXPECT_NE(last_.out.find("mmlu/acc"), std::string::npos) << last_.out;
  EXPECT_NE(last_.out.find("5 metrics compared, 0 regressed"), std::string::npos) << last_.out;
  EXPECT_EQ(last_.out.find("alias"), std::string::npos);
  EXPECT_EQ(last_.out.find("n_samples"), std::string::npos);
}

TEST_F(RegressCli, DropBeyondToleranceExitsThree) {
  EXPECT_EQ(Run(Results(0.60, 0.45, 8.0)), 3);
  EXPECT_NE(last_.out.find("REGRESSED"), std::string::npos) << last_.out;
  EXPECT_NE(last_.out.find("1 regressed"), std::string::npos) << last_.out;
  // 0.015 is beyond both 2 * stderr (0.008) and the tolerance: regressed.
  EXPECT_EQ(Run(Results(0.585, 0.5, 8.0)), 3);
  // A wider tolerance lets the same drop through.
  EXPECT_EQ(Run(Results(0.60, 0.45, 8.0), kBaseline, {"--tolerance", "0.06"}), 0);
}

TEST_F(RegressCli, LowerIsBetterForPerplexity) {
  EXPECT_EQ(Run(Results(0.6, 0.5, 7.0)), 0) << last_.out;  // lower perplexity: improved
  EXPECT_NE(last_.out.find("improved"), std::string::npos);
  EXPECT_EQ(Run(Results(0.6, 0.5, 8.5)), 3) << last_.out;  // higher perplexity: regressed
}

TEST_F(RegressCli, LmEvalStyleKeys) {
  // "acc,none" has "acc_stderr,none" = 0.02 in the baseline: 0.03 is inside 2 * 0.02.
  EXPECT_EQ(Run(Results(0.6, 0.5, 8.0, 0.47)), 0) << last_.out;
  EXPECT_EQ(Run(Results(0.6, 0.5, 8.0, 0.45)), 3) << last_.out;
}

TEST_F(RegressCli, MalformedOrMissingExitsTwo) {
  EXPECT_EQ(Run("{\"results\": {"), 2);
  EXPECT_NE(last_.err.find("not JSON"), std::string::npos) << last_.err;
  EXPECT_EQ(Run(R"({"results": {"mmlu": {"acc": 0.6}}})"), 2);  // the other tasks are missing
  EXPECT_NE(last_.err.find("of the baseline is missing"), std::string::npos) << last_.err;
  EXPECT_EQ(Run(R"({"results": {"mmlu": {"acc": "high"}, "humaneval": {"pass@1": 1},
                "perplexity": {"perplexity": 1, "bits_per_byte": 1}, "arc": {"acc,none": 1}}})"),
            2);
  EXPECT_NE(last_.err.find("expected a number"), std::string::npos) << last_.err;
  EXPECT_EQ(Run(Results(0.6, 0.5, 8.0), R"({"res": {}})"), 2);
  EXPECT_EQ(Run(Results(0.6, 0.5, 8.0), R"({"results": {}})"), 2);  // nothing to compare
  EXPECT_EQ(Run(Results(0.6, 0.5, 8.0), kBaseline, {"--tolerance", "-1"}), 2);
  EXPECT_EQ(Run(Results(0.6, 0.5, 8.0), kBaseline, {"--bogus"}), 2);
  last_ = testing::RunDsv3(
      {"regress", "--results", dir_.Join("nope.json"), "--baseline", dir_.Join("baseline.json")});
  EXPECT_EQ(last_.exit_code, 2);
}

TEST_F(RegressCli, NullBaselineMetricIsListedNotJudged) {
  // A baseline whose run wrote pass@1 as null (a NaN) cannot gate it; the table says so.
  const std::string baseline =
      R"({"results": {"mmlu": {"acc": 0.60}, "humaneval": {"pass@1": null, "alias": "he"}}})";
  EXPECT_EQ(Run(Results(0.60, 0.0, 8.0), baseline), 0) << last_.err;
  EXPECT_NE(last_.out.find("1 metrics compared, 0 regressed"), std::string::npos) << last_.out;
  EXPECT_NE(last_.out.find("not compared (null in the baseline): humaneval/pass@1\n"),
            std::string::npos)
      << last_.out;
  // Without nulls there is no such line.
  EXPECT_EQ(Run(Results(0.60, 0.5, 8.0)), 0) << last_.err;
  EXPECT_EQ(last_.out.find("not compared"), std::string::npos) << last_.out;
}

TEST(Regress, Rules) {
  EXPECT_TRUE(MetricLowerIsBetter("perplexity"));
  EXPECT_TRUE(MetricLowerIsBetter("word_perplexity,none"));
  EXPECT_TRUE(MetricLowerIsBetter("bits_per_byte"));
  EXPECT_TRUE(MetricLowerIsBetter("eval_loss"));
  EXPECT_FALSE(MetricLowerIsBetter("acc"));
  EXPECT_FALSE(MetricLowerIsBetter("pass@1"));
  // The larger of the two stderrs sets the allowance.
  auto r = CompareResults(R"({"results": {"t": {"m": 0.5, "m_stderr": 0.1}}})", "r",
                          R"({"results": {"t": {"m": 0.7, "m_stderr": 0.01}}})", "b",
                          RegressOptions{0.01, 2.0});
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->rows.size(), 1u);
  EXPECT_DOUBLE_EQ(r->rows[0].allowed, 0.2);
  EXPECT_EQ(r->rows[0].verdict, RegressVerdict::kOk);
}

}  // namespace
}  // namespace dsv3
