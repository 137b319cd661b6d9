// RFC-4180 CSV parsing for the dataset readers (MMLU's hendrycks files). The real files mix
// LF and CRLF, end with or without a final newline, and carry newlines and doubled quotes
// inside quoted fields, so line splitting is never enough. Errors name file:line.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

struct CsvRow {
  std::vector<std::string> fields;
  int64_t line = 0;  // 1-based line on which the record starts (records can span lines)
};

// Parses `text` as CSV. `name` (usually the file path) prefixes every error message.
// Accepted: fields separated by ',', records ended by LF, CRLF or end of input, quoted fields
// with "" for a quote and any bytes (newlines included) inside. Rejected, naming the line:
// an unterminated quoted field, bytes after a closing quote other than a separator or line
// end, a bare '"' inside an unquoted field, and invalid UTF-8. An empty line is skipped, as
// Python's csv module and pandas do (it holds no record); a UTF-8 BOM at the start is dropped.
StatusOr<std::vector<CsvRow>> ParseCsv(std::string_view text, const std::string& name);

// Reads and parses a whole file.
StatusOr<std::vector<CsvRow>> ReadCsvFile(const std::string& path);

// True when `s` is valid UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace dsv3
