// dsv3 regress logic: parse both documents, walk the baseline, judge each metric.
#include "eval/regress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace dsv3 {

namespace {

using nlohmann::json;

StatusOr<json> ParseResults(const std::string& text, const std::string& name) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    return Status::Invalid(name + ": not JSON: " + e.what());
  }
  if (!doc.is_object() || !doc.contains("results") || !doc["results"].is_object())
    return Status::Invalid(name +
                           ": expected an object with a \"results\" object (see eval/regress.h)");
  for (auto& [task, metrics] : doc["results"].items())
    if (!metrics.is_object())
      return Status::Invalid(name + ": results.\"" + task + "\" is " + metrics.type_name() +
                             ", expected an object of metrics");
  return doc["results"];
}

// "acc" -> "acc_stderr"; "acc,none" -> "acc_stderr,none" (lm-evaluation-harness keys).
std::string StderrKey(const std::string& metric) {
  const size_t comma = metric.find(',');
  if (comma == std::string::npos) return metric + "_stderr";
  return metric.substr(0, comma) + "_stderr" + metric.substr(comma);
}

bool IsStderrKey(const std::string& key) {
  const std::string base = key.substr(0, key.find(','));
  return base.size() > 7 && base.compare(base.size() - 7, 7, "_stderr") == 0;
}

bool IsBookkeeping(const std::string& key) {
  return key == "n_samples" || key == "num_samples" || key == "samples" || key == "n_shot" ||
         key == "num_fewshot";
}

double StderrOf(const json& task, const std::string& metric) {
  const std::string key = StderrKey(metric);
  if (task.contains(key) && task[key].is_number()) {
    const double v = task[key].get<double>();
    if (std::isfinite(v) && v > 0) return v;
  }
  return 0.0;
}

}  // namespace

const char* RegressVerdictName(RegressVerdict v) {
  switch (v) {
    case RegressVerdict::kOk:
      return "ok";
    case RegressVerdict::kImproved:
      return "improved";
    case RegressVerdict::kRegressed:
      return "REGRESSED";
  }
  return "?";
}

bool MetricLowerIsBetter(const std::string& metric) {
  const std::string base = metric.substr(0, metric.find(','));
  for (const char* word : {"perplexity", "bits_per_byte", "bpb", "loss"})
    if (base.find(word) != std::string::npos) return true;
  return base == "ppl";
}

StatusOr<RegressReport> CompareResults(const std::string& results_json,
                                       const std::string& results_name,
                                       const std::string& baseline_json,
                                       const std::string& baseline_name,
                                       const RegressOptions& opts) {
  if (!(opts.tolerance >= 0) || !(opts.stderr_multiple >= 0))
    return Status::Invalid("--tolerance and --stderr-multiple must be >= 0");
  ASSIGN_OR_RETURN(json now, ParseResults(results_json, results_name));
  ASSIGN_OR_RETURN(json base, ParseResults(baseline_json, baseline_name));
  RegressReport report;
  for (auto& [task, metrics] : base.items()) {
    for (auto& [metric, value] : metrics.items()) {
      // Only numbers are metrics; strings ("alias") carry nothing to compare. A null (an
      // empty LongBench-E bucket, or a NaN the baseline's run wrote as null) is a metric
      // without a value: listed, so that the gate does not pass over it unseen.
      if (IsStderrKey(metric) || IsBookkeeping(metric)) continue;
      if (value.is_null()) {
        report.not_compared.push_back(task + "/" + metric);
        continue;
      }
      if (!value.is_number()) continue;
      const std::string where = "\"" + task + "\" / \"" + metric + "\"";
      if (!now.contains(task))
        return Status::Invalid(results_name + ": task \"" + task + "\" of the baseline is missing");
      const json& now_task = now[task];
      if (!now_task.contains(metric))
        return Status::Invalid(results_name + ": metric " + where + " of the baseline is missing");
      if (!now_task[metric].is_number())
        return Status::Invalid(results_name + ": metric " + where + " is " +
                               now_task[metric].type_name() + ", expected a number");
      RegressRow row;
      row.task = task;
      row.metric = metric;
      row.baseline = value.get<double>();
      row.now = now_task[metric].get<double>();
      row.delta = row.now - row.baseline;
      row.lower_is_better = MetricLowerIsBetter(metric);
      const double se = std::max(StderrOf(now_task, metric), StderrOf(metrics, metric));
      row.allowed = std::max(opts.tolerance, opts.stderr_multiple * se);
      const double worse = row.lower_is_better ? row.delta : -row.delta;
      if (worse > row.allowed) {
        row.verdict = RegressVerdict::kRegressed;
        ++report.regressed;
      } else if (-worse > row.allowed) {
        row.verdict = RegressVerdict::kImproved;
      }
      report.rows.push_back(std::move(row));
    }
  }
  if (report.rows.empty())
    return Status::Invalid(baseline_name + ": no numeric metrics to compare against");
  return report;
}

std::string FormatRegressTable(const RegressReport& report) {
  size_t width = 6;
  for (const auto& r : report.rows) width = std::max(width, r.task.size() + 1 + r.metric.size());
  std::string out;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-*s %12s %12s %12s %10s  %s\n", static_cast<int>(width),
                "metric", "baseline", "now", "delta", "allowed", "verdict");
  out += buf;
  for (const auto& r : report.rows) {
    const std::string name = r.task + "/" + r.metric;
    std::snprintf(buf, sizeof buf, "%-*s %12.6g %12.6g %+12.6g %10.4g  %s%s\n",
                  static_cast<int>(width), name.c_str(), r.baseline, r.now, r.delta, r.allowed,
                  RegressVerdictName(r.verdict), r.lower_is_better ? " (lower is better)" : "");
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "%zu metrics compared, %d regressed\n", report.rows.size(),
                report.regressed);
  out += buf;
  if (!report.not_compared.empty()) {
    out += "not compared (null in the baseline):";
    for (const auto& name : report.not_compared) out += " " + name;
    out += "\n";
  }
  return out;
}

}  // namespace dsv3
