// LongBench v1: the data records (<dataset>.jsonl, <dataset>_e.jsonl for LongBench-E), the
// official config JSONs (dataset2prompt.json, dataset2maxlen.json), the prompt filling of
// pred.py, and the prediction files pred.py writes (what eval.py scores).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

struct LongBenchRecord {
  std::string input;    // question or instruction; may be empty (lcc)
  std::string context;  // the long document(s)
  std::vector<std::string> answers;
  int64_t length = 0;  // words (en, code) or characters (zh); drives LongBench-E buckets
  std::string dataset;
  std::string language;
  std::optional<std::vector<std::string>> all_classes;  // trec, lsht only
  std::string id;                                       // "_id"
  int64_t line = 0;
};

// Reads a LongBench JSONL file. Every field above is required with its type (all_classes may
// be null); an error names file:line and the field.
StatusOr<std::vector<LongBenchRecord>> ReadLongBench(const std::string& path);

struct LongBenchConfig {
  std::map<std::string, std::string> prompt;  // dataset2prompt.json
  std::map<std::string, int> maxlen;          // dataset2maxlen.json (max new tokens)
};
// Reads <dir>/dataset2prompt.json and <dir>/dataset2maxlen.json; both must be objects of
// strings / positive integers and must name the same datasets.
StatusOr<LongBenchConfig> ReadLongBenchConfig(const std::string& dir);

// pred.py's `prompt_format.format(**json_obj)` for the templates LongBench ships: "{name}"
// is replaced by the record field (context, input, answers... only context and input are
// used), "{{" and "}}" are literal braces, and substituted text is never re-interpreted. An
// unknown field or an unbalanced brace is an error, as str.format would raise.
StatusOr<std::string> FillLongBenchPrompt(const std::string& tmpl, const LongBenchRecord& r);

// One line of pred.py's output: {"pred", "answers", "all_classes", "length"}.
struct LongBenchPrediction {
  std::string pred;
  std::vector<std::string> answers;
  std::optional<std::vector<std::string>> all_classes;
  int64_t length = 0;
  int64_t line = 0;
};
StatusOr<std::vector<LongBenchPrediction>> ReadLongBenchPredictions(const std::string& path);

}  // namespace dsv3
