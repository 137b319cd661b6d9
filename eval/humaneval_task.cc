// HumanEval: n samples per problem from the model (or a samples file), truncated at the
// stop sequences, executed in the sandbox, scored by unbiased pass@k.
#include <nlohmann/json.hpp>
#include <set>

#include "eval/tasks.h"

namespace dsv3 {

StatusOr<std::vector<HumanEvalProblem>> LoadHumanEvalTask(const HumanEvalTaskOptions& o) {
  ASSIGN_OR_RETURN(std::vector<HumanEvalProblem> problems, ReadHumanEval(o.file));
  if (o.limit > 0 && static_cast<int64_t>(problems.size()) > o.limit) problems.resize(o.limit);
  return problems;
}

Status RunHumanEval(Harness* h, const std::vector<HumanEvalProblem>& problems, const HumanEvalTaskOptions& o,
                    EvalResults* r) {
  std::vector<HumanEvalSample> samples;
  HumanEvalOptions scoring = o.scoring;
  if (!o.samples.empty()) {
    ASSIGN_OR_RETURN(samples, ReadHumanEvalSamples(o.samples));
    scoring.allow_missing_problems = o.limit > 0;
    if (o.limit > 0) {  // keep only samples of the problems kept
      std::set<std::string> keep;
      for (const auto& p : problems) keep.insert(p.task_id);
      std::vector<HumanEvalSample> kept;
      for (auto& s : samples)
        if (keep.count(s.task_id)) kept.push_back(std::move(s));
      samples = std::move(kept);
    }
  } else {
    if (!h) return Status::Invalid("humaneval needs a model (or --samples FILE)");
    std::vector<GenRequest> reqs;
    for (size_t p = 0; p < problems.size(); ++p)
      for (int64_t k = 0; k < o.n_samples; ++k) {
        GenRequest g;
        g.prompt = problems[p].prompt;
        g.stop = HumanEvalStopSequences();
        g.max_new_tokens = o.max_new_tokens;
        g.sampling = o.sampling;
        g.stream = p * 1000003ull + static_cast<uint64_t>(k);
        reqs.push_back(std::move(g));
      }
    ASSIGN_OR_RETURN(std::vector<GenResult> gen, h->GenerateUntil("humaneval", reqs));
    for (size_t i = 0; i < gen.size(); ++i)
      samples.push_back({problems[i / o.n_samples].task_id, gen[i].text});
    scoring.truncate_completions = true;
  }
  ASSIGN_OR_RETURN(HumanEvalReport report, ScoreHumanEvalSamples(problems, samples, scoring));
  TaskMetrics& m = r->tasks["humaneval"];
  for (const auto& [k, v] : report.pass_at_k) {
    m.values["pass@" + std::to_string(k)] = v;
    m.values["pass@" + std::to_string(k) + "_stderr"] = report.pass_at_k_stderr.at(k);
  }
  m.n_samples = report.num_samples;
  if (report.num_error > 0) r->sample_errors["humaneval"] = report.num_error;
  for (const auto& s : report.samples) {
    nlohmann::json log = {{"task", "humaneval"}, {"task_id", s.task_id}, {"sample", s.sample_index},
                          {"completion", s.completion}, {"verdict", VerdictName(s.verdict)}, {"reason", s.reason}};
    r->sample_log.push_back(log.dump());
  }
  r->info["humaneval"] = "human-eval program format; sandbox: " + report.sandbox;
  return Status::Ok();
}

}  // namespace dsv3
