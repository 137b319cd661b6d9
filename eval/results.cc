#include "eval/results.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/base/file.h"

namespace dsv3 {

std::string ResultsJson(const EvalResults& results, const EvalRunInfo& info) {
  nlohmann::ordered_json j;
  nlohmann::ordered_json tasks = nlohmann::ordered_json::object();
  for (const auto& [task, m] : results.tasks) {
    nlohmann::ordered_json t = nlohmann::ordered_json::object();
    for (const auto& [k, v] : m.values) t[k] = std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
    t["n_samples"] = m.n_samples;
    tasks[task] = t;
  }
  j["results"] = tasks;
  j["sample_errors"] = results.sample_errors;
  j["prompt_formats"] = results.info;
  nlohmann::ordered_json config = nlohmann::ordered_json::object();
  for (const auto& [k, v] : info.strings) config[k] = v;
  for (const auto& [k, v] : info.numbers) config[k] = v;
  j["config"] = config;
  return j.dump(2) + "\n";
}

Status WriteResults(const EvalResults& results, const EvalRunInfo& info, const std::string& path,
                    const std::string& log_path) {
  if (!log_path.empty()) {
    std::string log;
    for (const auto& line : results.sample_log) log += line + "\n";
    RETURN_IF_ERROR(WriteFileAtomic(log_path, log));
  }
  return WriteFileAtomic(path, ResultsJson(results, info));
}

}  // namespace dsv3
