// Alpaca reader: format sniffed from the first non-blank byte; same checks for both layouts.
#include "datasets/instruct.h"

#include <zlib.h>

#include <nlohmann/json.hpp>

#include "datasets/jsonl.h"
#include "engine/base/file.h"

namespace dsv3 {

namespace {

Status ToExample(const nlohmann::json& j, InstructExample* ex) {
  if (!j.is_object())
    return Status::Invalid(std::string("expected a JSON object, got ") + j.type_name());
  auto str = [&](const char* key, bool required, std::string* out) -> Status {
    auto it = j.find(key);
    if (it == j.end() || (it->is_null() && !required)) {
      if (required) return Status::Invalid(std::string("missing field \"") + key + "\"");
      return Status::Ok();
    }
    if (!it->is_string())
      return Status::Invalid(std::string("field \"") + key + "\" is " + it->type_name() +
                             ", expected a string");
    *out = it->get<std::string>();
    return Status::Ok();
  };
  RETURN_IF_ERROR(str("instruction", true, &ex->instruction));
  RETURN_IF_ERROR(str("input", false, &ex->input));
  RETURN_IF_ERROR(str("output", true, &ex->output));
  return Status::Ok();
}

// First non-whitespace byte of the (possibly gzip) file, or 0 when there is none.
StatusOr<char> FirstByte(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return Status::NotFound(path + ": cannot open");
  char c = 0;
  int ch;
  while ((ch = gzgetc(f)) != -1) {
    if (ch != ' ' && ch != '\n' && ch != '\r' && ch != '\t') {
      c = static_cast<char>(ch);
      break;
    }
  }
  gzclose(f);
  return c;
}

StatusOr<std::string> ReadWhole(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return Status::NotFound(path + ": cannot open");
  std::string out;
  char buf[1 << 16];
  int got;
  while ((got = gzread(f, buf, sizeof buf)) > 0) out.append(buf, got);
  int err = Z_OK;
  const char* msg = gzerror(f, &err);
  const bool bad = got < 0 || (err != Z_OK && err != Z_STREAM_END);
  std::string why = msg ? msg : "";
  gzclose(f);
  if (bad) return Status::Invalid(path + ": corrupt or truncated gzip data: " + why);
  return out;
}

}  // namespace

StatusOr<std::vector<InstructExample>> ReadInstruct(const std::string& path) {
  ASSIGN_OR_RETURN(char first, FirstByte(path));
  std::vector<InstructExample> out;
  if (first == '[') {
    ASSIGN_OR_RETURN(std::string text, ReadWhole(path));
    nlohmann::json arr;
    try {
      arr = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      return Status::Invalid(path + ": not a JSON array: " + e.what());
    }
    for (size_t i = 0; i < arr.size(); ++i) {
      InstructExample ex;
      ex.source_index = static_cast<int64_t>(i);
      Status s = ToExample(arr[i], &ex);
      if (!s.ok()) return s.WithPrefix(path + ": record " + std::to_string(i) + ": ");
      out.push_back(std::move(ex));
    }
  } else {
    RETURN_IF_ERROR(ForEachJsonlLine(path, TornLastLine::kError, [&](const JsonlLine& l) {
      InstructExample ex;
      ex.source_index = l.line_no;
      RETURN_IF_ERROR(ToExample(nlohmann::json::parse(l.text), &ex));
      out.push_back(std::move(ex));
      return Status::Ok();
    }));
  }
  if (out.empty()) return Status::Invalid(path + ": no instruction records");
  return out;
}

}  // namespace dsv3
