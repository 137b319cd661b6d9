// HumanEval reader: one JSON object per line, five required string fields.
#include "datasets/humaneval.h"

#include <nlohmann/json.hpp>
#include <set>

#include "datasets/jsonl.h"

namespace dsv3 {

namespace {
Status GetString(const nlohmann::json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Invalid(std::string("missing field \"") + key + "\"");
  if (!it->is_string())
    return Status::Invalid(std::string("field \"") + key + "\" is " + it->type_name() +
                           ", expected a string");
  *out = it->get<std::string>();
  return Status::Ok();
}
}  // namespace

StatusOr<std::vector<HumanEvalProblem>> ReadHumanEval(const std::string& path) {
  std::vector<HumanEvalProblem> out;
  std::set<std::string> seen;
  RETURN_IF_ERROR(ForEachJsonlLine(path, TornLastLine::kError, [&](const JsonlLine& l) {
    auto j = nlohmann::json::parse(l.text);
    if (!j.is_object()) return Status::Invalid("expected a JSON object");
    HumanEvalProblem p;
    RETURN_IF_ERROR(GetString(j, "task_id", &p.task_id));
    RETURN_IF_ERROR(GetString(j, "prompt", &p.prompt));
    RETURN_IF_ERROR(GetString(j, "canonical_solution", &p.canonical_solution));
    RETURN_IF_ERROR(GetString(j, "test", &p.test));
    RETURN_IF_ERROR(GetString(j, "entry_point", &p.entry_point));
    if (!seen.insert(p.task_id).second)
      return Status::Invalid("duplicate task_id \"" + p.task_id + "\"");
    out.push_back(std::move(p));
    return Status::Ok();
  }));
  if (out.empty()) return Status::Invalid(path + ": no problems in file");
  return out;
}

}  // namespace dsv3
