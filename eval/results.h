// results.json and the per-sample log: what `dsv3 eval` writes and `dsv3 regress` reads.
// The schema is documented in the README ("results.json").
#pragma once

#include <map>
#include <string>

#include "engine/base/status.h"
#include "eval/tasks.h"

namespace dsv3 {

struct EvalRunInfo {
  std::map<std::string, std::string> strings;  // model_path, model_fingerprint, tokenizer, ...
  std::map<std::string, double> numbers;       // num_fewshot, seed, wall_time_s, ...
};

std::string ResultsJson(const EvalResults& results, const EvalRunInfo& info);
// Writes results.json and (when log_path is not empty) the JSONL sample log, atomically.
Status WriteResults(const EvalResults& results, const EvalRunInfo& info, const std::string& path,
                    const std::string& log_path);

}  // namespace dsv3
