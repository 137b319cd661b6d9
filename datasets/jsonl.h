// JSON Lines reading for plain and gzip files (zlib reads both, so `.gz` needs no special
// path). Every line must be one JSON value; errors name file:line ("line 7 is not JSON:
// ..."). The reader only validates and hands out the text of each line: the callers parse
// into their own records, which keeps nlohmann out of the headers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "engine/base/status.h"

namespace dsv3 {

// What to do with a last line that is not valid JSON (or is empty) and has no '\n' after it.
// Dataset files are never torn, so a bad last line is an error there. An append-only cache
// that was being written when the process died can end in half a record: kTolerate skips
// it and reports it, so the writer can truncate the file to `valid_bytes` and go on.
enum class TornLastLine { kError, kTolerate };

struct JsonlLine {
  int64_t line_no = 0;    // 1-based
  std::string_view text;  // without the line end; valid only during the callback
};

struct JsonlStats {
  int64_t lines = 0;  // lines handed to the callback
  bool torn_last_line = false;
  uint64_t valid_bytes = 0;  // uncompressed bytes up to and including the last good line
};

// Calls `fn` for each line in order; stops at the first error (its own or one `fn` returns,
// which is prefixed with "path:line: "). An empty line in the middle of the file is an
// error (json.loads("") fails too). CRLF line ends are accepted. A truncated or corrupt
// gzip stream is an error naming the last complete line.
Status ForEachJsonlLine(const std::string& path, TornLastLine torn,
                        const std::function<Status(const JsonlLine&)>& fn,
                        JsonlStats* stats = nullptr);

// Whether `text` is exactly one JSON value (surrounding whitespace allowed); on failure
// `why` gets the parser's message.
bool IsJson(std::string_view text, std::string* why = nullptr);

}  // namespace dsv3
