// MMLU: 4 log-likelihood requests per question; the prediction is the choice with the
// highest log-likelihood (lm-eval's `acc`). Accuracy per subject, per category and overall
// (micro-averaged, i.e. weighted by subject size, as lm-eval's mmlu group reports).
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "eval/mmlu_prompt.h"
#include "eval/tasks.h"

namespace dsv3 {

void AddMean(const std::string& metric, const std::vector<double>& xs, TaskMetrics* m) {
  const double n = static_cast<double>(xs.size());
  double mean = 0, var = 0;
  for (double x : xs) mean += x / n;
  for (double x : xs) var += (x - mean) * (x - mean);
  m->values[metric] = mean;
  m->values[metric + "_stderr"] = xs.size() > 1 ? std::sqrt(var / (n - 1) / n) : 0.0;
  m->n_samples = static_cast<int64_t>(xs.size());
}

StatusOr<MmluTaskData> LoadMmluTask(const MmluTaskOptions& o) {
  MmluTaskData d;
  std::vector<std::string> subjects = o.subjects;
  if (subjects.empty()) {
    ASSIGN_OR_RETURN(subjects, ListMmluTestSubjects(o.dir));
    if (subjects.empty()) return Status::NotFound(o.dir + "/test: no <subject>_test.csv files");
  }
  for (const auto& s : subjects) {
    ASSIGN_OR_RETURN(MmluSubjectData data, LoadMmluSubject(o.dir, s));
    // An empty test file would score as accuracy 0 over no questions.
    if (data.test.empty()) return Status::Invalid(MmluTestPath(o.dir, s) + ": no questions");
    if (o.limit > 0 && static_cast<int64_t>(data.test.size()) > o.limit) data.test.resize(o.limit);
    d.subjects.push_back(std::move(data));
  }
  ASSIGN_OR_RETURN(d.requests, BuildMmluRequests(d.subjects, o.num_fewshot));
  return d;
}

Status RunMmlu(Harness& h, const MmluTaskData& data, const MmluTaskOptions& o, EvalResults* r) {
  // Order the requests so the engine reuses each context: a block of documents with choice A,
  // then the same block with choice B, ... — each later choice finds its context cached in a
  // slot and computes only the last context token and the continuation.
  const size_t block = static_cast<size_t>(std::max<int64_t>(1, h.model().options().batch_size));
  std::vector<LoglikRequest> reqs;
  std::vector<size_t> order;  // reqs[i] is data.requests[order[i]]
  for (size_t d0 = 0; d0 < data.requests.size(); d0 += 4 * block) {
    const size_t d1 = std::min(data.requests.size(), d0 + 4 * block);
    for (int choice = 0; choice < 4; ++choice)
      for (size_t i = d0 + choice; i < d1; i += 4) {
        order.push_back(i);
        reqs.push_back({data.requests[i].context, data.requests[i].continuation});
      }
  }
  ASSIGN_OR_RETURN(std::vector<LoglikResult> res, h.Loglikelihood("mmlu", reqs));
  std::vector<LoglikResult> by_request(data.requests.size());
  for (size_t i = 0; i < order.size(); ++i) by_request[order[i]] = res[i];

  std::map<std::string, std::vector<double>> per_category;
  std::vector<double> all;
  size_t q = 0;
  for (const auto& subj : data.subjects) {
    std::vector<double> correct;
    for (size_t doc = 0; doc < subj.test.size(); ++doc, q += 4) {
      std::string error;
      for (int c = 0; c < 4; ++c)
        if (!by_request[q + c].error.empty()) error = by_request[q + c].error;
      if (!error.empty()) {  // counted and logged, left out of the accuracy
        ++r->sample_errors["mmlu"];
        r->sample_log.push_back(nlohmann::json({{"task", data.requests[q].task}, {"doc_id", data.requests[q].doc_id},
                                                {"error", error}}).dump());
        continue;
      }
      int best = 0;
      for (int c = 1; c < 4; ++c)
        if (by_request[q + c].logprob > by_request[q + best].logprob) best = c;
      const int gold = data.requests[q].gold;
      correct.push_back(best == gold ? 1.0 : 0.0);
      nlohmann::json log = {{"task", data.requests[q].task}, {"doc_id", data.requests[q].doc_id},
                            {"context", data.requests[q].context}, {"gold", gold}, {"pred", best},
                            {"acc", best == gold ? 1 : 0}};
      for (int c = 0; c < 4; ++c)
        log["loglikelihoods"].push_back({by_request[q + c].logprob, by_request[q + c].greedy});
      r->sample_log.push_back(log.dump());
    }
    AddMean("acc", correct, &r->tasks["mmlu_" + subj.subject]);
    auto& cat = per_category[MmluCategoryName(subj.category)];
    cat.insert(cat.end(), correct.begin(), correct.end());
    all.insert(all.end(), correct.begin(), correct.end());
  }
  for (const auto& [name, xs] : per_category) AddMean("acc", xs, &r->tasks["mmlu_" + name]);
  AddMean("acc", all, &r->tasks["mmlu"]);
  r->info["mmlu"] = std::string(kMmluPromptFormatVersion) + ", " + std::to_string(o.num_fewshot) + "-shot, " +
                    (h.options().add_bos ? "BOS" : "no BOS");
  return Status::Ok();
}

}  // namespace dsv3
