// MMLU requests in lm-evaluation-harness's format (tasks/mmlu/default), so that accuracies
// are comparable with the harness the field reports. No model is needed to build them:
// `dsv3 eval --write-requests FILE` writes them for a byte-level comparison with lm-eval.
#pragma once

#include <string>
#include <vector>

#include "datasets/mmlu.h"
#include "engine/base/status.h"

namespace dsv3 {

// Bump when the rendered text changes; results.json records it.
inline constexpr const char* kMmluPromptFormatVersion = "lm-eval-mmlu-default-v1";

// The four continuations scored by log-likelihood, in answer order (note the leading space:
// lm-eval's target_delimiter).
inline constexpr const char* kMmluContinuations[4] = {" A", " B", " C", " D"};

// "{question stripped}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:" (lm-eval's doc_to_text).
std::string MmluRenderQuestion(const MmluQuestion& q);

// The full context for one test question: description, the first `num_fewshot` dev rows
// (each rendered question + " " + letter + "\n\n"), then the test question.
std::string MmluContext(const std::string& subject, const std::vector<MmluQuestion>& dev,
                        int num_fewshot, const MmluQuestion& test);

struct MmluRequest {
  std::string task;    // "mmlu_<subject>"
  int64_t doc_id = 0;  // row index in the subject's test CSV
  std::string context;
  std::string continuation;  // one of kMmluContinuations
  int choice = 0;            // index of the continuation (0..3)
  int gold = 0;              // the correct choice of the document
};

// All requests (4 per test row) for `subjects` in the given order. num_fewshot must be in
// [0, number of dev rows]; more is a usage error, as lm-eval raises too.
StatusOr<std::vector<MmluRequest>> BuildMmluRequests(const std::vector<MmluSubjectData>& subjects,
                                                     int num_fewshot);

// One JSON object per line: {"task","doc_id","context","continuation"} (keys in that order,
// UTF-8 unescaped); written atomically.
Status WriteMmluRequests(const std::vector<MmluRequest>& requests, const std::string& path);
// The same JSONL text, for tests and for writing elsewhere.
std::string MmluRequestsJsonl(const std::vector<MmluRequest>& requests);

}  // namespace dsv3
