// LongBench readers: strict field types, because eval.py would crash (or mis-score) on the
// same malformed records and the user should hear about it before any model work starts.
#include "datasets/longbench.h"

#include <nlohmann/json.hpp>

#include "datasets/jsonl.h"
#include "engine/base/file.h"

namespace dsv3 {

namespace {

using nlohmann::json;

Status Field(const json& j, const char* key, const json** out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Invalid(std::string("missing field \"") + key + "\"");
  *out = &*it;
  return Status::Ok();
}

Status TypeError(const char* key, const json& v, const char* expected) {
  return Status::Invalid(std::string("field \"") + key + "\" is " + v.type_name() + ", expected " +
                         expected);
}

Status GetString(const json& j, const char* key, std::string* out) {
  const json* v;
  RETURN_IF_ERROR(Field(j, key, &v));
  if (!v->is_string()) return TypeError(key, *v, "a string");
  *out = v->get<std::string>();
  return Status::Ok();
}

Status GetStringList(const json& v, const char* key, std::vector<std::string>* out) {
  if (!v.is_array()) return TypeError(key, v, "a list of strings");
  for (const auto& e : v) {
    if (!e.is_string()) return TypeError(key, e, "a list of strings (an element)");
    out->push_back(e.get<std::string>());
  }
  return Status::Ok();
}

Status GetCommon(const json& j, std::vector<std::string>* answers,
                 std::optional<std::vector<std::string>>* classes, int64_t* length) {
  const json* v;
  RETURN_IF_ERROR(Field(j, "answers", &v));
  RETURN_IF_ERROR(GetStringList(*v, "answers", answers));
  if (answers->empty()) return Status::Invalid("field \"answers\" is empty");
  RETURN_IF_ERROR(Field(j, "all_classes", &v));
  if (!v->is_null()) {
    classes->emplace();
    RETURN_IF_ERROR(GetStringList(*v, "all_classes", &**classes));
  }
  RETURN_IF_ERROR(Field(j, "length", &v));
  if (!v->is_number_integer()) return TypeError("length", *v, "an integer");
  *length = v->get<int64_t>();
  if (*length < 0) return Status::Invalid("field \"length\" is negative");
  return Status::Ok();
}

}  // namespace

StatusOr<std::vector<LongBenchRecord>> ReadLongBench(const std::string& path) {
  std::vector<LongBenchRecord> out;
  RETURN_IF_ERROR(ForEachJsonlLine(path, TornLastLine::kError, [&](const JsonlLine& l) {
    const json j = json::parse(l.text);
    if (!j.is_object()) return Status::Invalid("expected a JSON object");
    LongBenchRecord r;
    r.line = l.line_no;
    RETURN_IF_ERROR(GetString(j, "input", &r.input));
    RETURN_IF_ERROR(GetString(j, "context", &r.context));
    RETURN_IF_ERROR(GetString(j, "dataset", &r.dataset));
    RETURN_IF_ERROR(GetString(j, "language", &r.language));
    RETURN_IF_ERROR(GetString(j, "_id", &r.id));
    RETURN_IF_ERROR(GetCommon(j, &r.answers, &r.all_classes, &r.length));
    out.push_back(std::move(r));
    return Status::Ok();
  }));
  return out;
}

StatusOr<std::vector<LongBenchPrediction>> ReadLongBenchPredictions(const std::string& path) {
  std::vector<LongBenchPrediction> out;
  RETURN_IF_ERROR(ForEachJsonlLine(path, TornLastLine::kError, [&](const JsonlLine& l) {
    const json j = json::parse(l.text);
    if (!j.is_object()) return Status::Invalid("expected a JSON object");
    LongBenchPrediction p;
    p.line = l.line_no;
    RETURN_IF_ERROR(GetString(j, "pred", &p.pred));
    RETURN_IF_ERROR(GetCommon(j, &p.answers, &p.all_classes, &p.length));
    out.push_back(std::move(p));
    return Status::Ok();
  }));
  return out;
}

StatusOr<LongBenchConfig> ReadLongBenchConfig(const std::string& dir) {
  LongBenchConfig cfg;
  auto load = [](const std::string& path) -> StatusOr<json> {
    ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    try {
      json j = json::parse(text);
      if (!j.is_object()) return Status::Invalid(path + ": expected a JSON object");
      return j;
    } catch (const json::parse_error& e) {
      return Status::Invalid(path + ": not JSON: " + e.what());
    }
  };
  const std::string prompt_path = JoinPath(dir, "dataset2prompt.json");
  const std::string maxlen_path = JoinPath(dir, "dataset2maxlen.json");
  ASSIGN_OR_RETURN(json prompts, load(prompt_path));
  ASSIGN_OR_RETURN(json maxlens, load(maxlen_path));
  for (auto& [k, v] : prompts.items()) {
    if (!v.is_string()) return Status::Invalid(prompt_path + ": \"" + k + "\" is not a string");
    cfg.prompt[k] = v.get<std::string>();
  }
  for (auto& [k, v] : maxlens.items()) {
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (1 << 20))
      return Status::Invalid(maxlen_path + ": \"" + k + "\" is not a positive integer");
    cfg.maxlen[k] = v.get<int>();
  }
  for (const auto& [k, v] : cfg.prompt)
    if (!cfg.maxlen.count(k)) return Status::Invalid(maxlen_path + ": no entry for \"" + k + "\"");
  for (const auto& [k, v] : cfg.maxlen)
    if (!cfg.prompt.count(k)) return Status::Invalid(prompt_path + ": no entry for \"" + k + "\"");
  return cfg;
}

StatusOr<std::string> FillLongBenchPrompt(const std::string& tmpl, const LongBenchRecord& r) {
  std::string out;
  out.reserve(tmpl.size() + r.context.size() + r.input.size());
  for (size_t i = 0; i < tmpl.size(); ++i) {
    const char c = tmpl[i];
    if (c == '}') {
      if (i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      return Status::Invalid("prompt template: single '}' at byte " + std::to_string(i));
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = tmpl.find('}', i);
    if (close == std::string::npos)
      return Status::Invalid("prompt template: unclosed '{' at byte " + std::to_string(i));
    const std::string name = tmpl.substr(i + 1, close - i - 1);
    if (name == "context")
      out += r.context;
    else if (name == "input")
      out += r.input;
    else if (name == "dataset")
      out += r.dataset;
    else if (name == "language")
      out += r.language;
    else if (name == "_id")
      out += r.id;
    else
      return Status::Invalid("prompt template: unknown field {" + name + "}");
    i = close;
  }
  return out;
}

}  // namespace dsv3
