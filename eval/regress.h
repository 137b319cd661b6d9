// Regression scoring for CI: compare a results.json against a committed baseline.json and
// decide, metric by metric, whether the new build dropped beyond noise.
//
// results.json schema (the part regress reads; `dsv3 eval` writes more, e.g. "config"):
//   {
//     "results": {
//       "<task>": {                       // "mmlu", "mmlu_stem", "mmlu_abstract_algebra",
//         "<metric>": <number>,           //   "humaneval", "longbench_hotpotqa", "perplexity"
//         "<metric>_stderr": <number>,    // optional standard error of <metric>
//         "n_samples": <integer>,         // bookkeeping, not compared
//         "<metric>": null,               // no value (an empty LongBench-E bucket, a NaN):
//                                         //   listed as not compared, never judged
//         "<anything>": <string|...>      // ignored (e.g. "alias")
//       }, ...
//     }, ...
//   }
// lm-evaluation-harness's "metric,filter" keys work too: the stderr of "acc,none" is
// "acc_stderr,none". Every numeric metric of every task in the baseline is compared; a
// task or metric the baseline has and the results lack is an input error.
//
// A metric is lower-is-better when its name contains "perplexity", "bits_per_byte", "bpb",
// "loss" or is "ppl"; all others are higher-is-better. It regresses when it moved the bad
// way by more than max(tolerance, stderr_multiple * stderr), where stderr is the larger of
// the results' and the baseline's <metric>_stderr (0 when neither has one): two runs of the
// same build differ by sampling noise of that size, which must not fail CI. The tolerance is
// absolute, in the metric's own units (0.01 = one point of accuracy on a 0-1 scale).
#pragma once

#include <string>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

struct RegressOptions {
  double tolerance = 0.01;
  double stderr_multiple = 2.0;
};

enum class RegressVerdict { kOk, kImproved, kRegressed };
const char* RegressVerdictName(RegressVerdict v);

struct RegressRow {
  std::string task;
  std::string metric;
  double baseline = 0;
  double now = 0;
  double delta = 0;    // now - baseline
  double allowed = 0;  // max(tolerance, stderr_multiple * stderr)
  bool lower_is_better = false;
  RegressVerdict verdict = RegressVerdict::kOk;
};

struct RegressReport {
  std::vector<RegressRow> rows;  // baseline order (tasks, then metrics, sorted by name)
  int regressed = 0;
  // "task/metric" of each baseline metric that is null: nothing to judge it against, and
  // said so in the table, since a gate that silently skips a metric guards nothing there.
  std::vector<std::string> not_compared;
};

bool MetricLowerIsBetter(const std::string& metric);

// Compares the two documents (JSON text; the names are used in error messages). Errors:
// malformed JSON, no "results" object, a non-numeric metric value in the results where the
// baseline has a number, a baseline metric missing from the results, an empty baseline.
StatusOr<RegressReport> CompareResults(const std::string& results_json,
                                       const std::string& results_name,
                                       const std::string& baseline_json,
                                       const std::string& baseline_name,
                                       const RegressOptions& opts);

// Fixed-width table: metric, baseline, now, delta, allowed, verdict; then a summary line,
// and a line naming the baseline's null metrics when there are any.
std::string FormatRegressTable(const RegressReport& report);

}  // namespace dsv3
