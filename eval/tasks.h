// The evaluation tasks: each loads and validates its data first (before any model work), then
// runs through the Harness and adds metrics and per-sample log lines to EvalResults.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "datasets/humaneval.h"
#include "datasets/longbench.h"
#include "datasets/mmlu.h"
#include "engine/base/status.h"
#include "eval/harness.h"
#include "eval/humaneval.h"
#include "eval/mmlu_prompt.h"

namespace dsv3 {

struct TaskMetrics {
  std::map<std::string, double> values;  // metric -> value (and <metric>_stderr)
  int64_t n_samples = 0;
};

struct EvalResults {
  std::map<std::string, TaskMetrics> tasks;     // "mmlu", "mmlu_stem", "humaneval", ...
  std::map<std::string, int64_t> sample_errors; // task -> samples that failed to run
  std::map<std::string, std::string> info;      // task -> prompt format version etc.
  std::vector<std::string> sample_log;          // JSONL lines, deterministic order
};

// --- MMLU (lm-evaluation-harness format, log-likelihood of " A".." D") ---
struct MmluTaskOptions {
  std::string dir;                    // <data-dir>/mmlu
  std::vector<std::string> subjects;  // empty: every subject with a test CSV
  int num_fewshot = 5;
  int64_t limit = 0;                  // per subject; 0 = all
};
struct MmluTaskData {
  std::vector<MmluSubjectData> subjects;
  std::vector<MmluRequest> requests;
};
StatusOr<MmluTaskData> LoadMmluTask(const MmluTaskOptions& o);
Status RunMmlu(Harness& h, const MmluTaskData& data, const MmluTaskOptions& o, EvalResults* r);

// --- HumanEval (generate, execute in the sandbox, pass@k) ---
struct HumanEvalTaskOptions {
  std::string file;        // <data-dir>/humaneval/HumanEval.jsonl.gz
  std::string samples;     // score this samples file instead of generating
  int64_t limit = 0;
  int64_t n_samples = 1;
  int64_t max_new_tokens = 512;
  SamplingParams sampling; // temperature 0: greedy
  HumanEvalOptions scoring;
};
StatusOr<std::vector<HumanEvalProblem>> LoadHumanEvalTask(const HumanEvalTaskOptions& o);
// `h` may be null when o.samples is set (no model needed).
Status RunHumanEval(Harness* h, const std::vector<HumanEvalProblem>& problems, const HumanEvalTaskOptions& o,
                    EvalResults* r);

// --- LongBench v1 (pred.py prompts and truncation, eval.py scoring) ---
struct LongBenchTaskOptions {
  std::string dir;          // <data-dir>/longbench: <dataset>.jsonl and/or <dataset>_e.jsonl
  std::string config_dir;   // dataset2prompt.json, dataset2maxlen.json (default <dir>/config)
  std::string predictions;  // score pred.py outputs from this directory instead
  std::vector<std::string> datasets;  // empty: every dataset file found
  int64_t limit = 0;
  bool chat = false;        // wrap prompts in the chat template (chat models)
  int64_t max_prompt_tokens = 0;  // middle truncation budget; 0: --max-seq-len - max new tokens
};
struct LongBenchTaskData {
  LongBenchConfig config;
  std::map<std::string, std::vector<LongBenchRecord>> records;         // file stem -> records
  std::map<std::string, std::vector<LongBenchPrediction>> predictions;  // file stem -> preds
};
StatusOr<LongBenchTaskData> LoadLongBenchTask(const LongBenchTaskOptions& o);
Status RunLongBench(Harness* h, const LongBenchTaskData& data, const LongBenchTaskOptions& o,
                    const std::string& tokenizer_dir, EvalResults* r);

// --- Perplexity of a text file (sliding window) ---
struct PerplexityTaskOptions {
  std::string file;
  int64_t stride = 0;  // 0: half the window
};
StatusOr<std::string> LoadPerplexityTask(const PerplexityTaskOptions& o);
Status RunPerplexity(Harness& h, const std::string& text, const PerplexityTaskOptions& o, EvalResults* r);

// Binary metric mean and its standard error (sample std / sqrt(n), as lm-eval reports).
void AddMean(const std::string& metric, const std::vector<double>& xs, TaskMetrics* m);

}  // namespace dsv3
