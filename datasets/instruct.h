// Instruction-tuning data in the Alpaca format: {"instruction", "input", "output"} records,
// either one JSON array (Alpaca's own .json files) or JSON Lines, plain or gzip.
#pragma once

#include <string>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

struct InstructExample {
  std::string instruction;
  std::string input;  // often empty; optional in the file
  std::string output;
  int64_t source_index = 0;  // 1-based JSONL line or 0-based array index, for messages
};

// Reads either layout: a file whose first non-blank byte is '[' is a JSON array, anything
// else is JSONL. `instruction` and `output` are required strings; `input` may be absent or
// null (Alpaca omits it) but must be a string when present. Other keys are ignored (Alpaca
// variants add "history" or "system"), so that a richer file still trains.
StatusOr<std::vector<InstructExample>> ReadInstruct(const std::string& path);

}  // namespace dsv3
