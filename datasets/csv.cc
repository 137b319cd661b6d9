// RFC-4180 CSV: a small state machine over the bytes of the whole file.
#include "datasets/csv.h"

#include "engine/base/file.h"

namespace dsv3 {

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

StatusOr<std::vector<CsvRow>> ParseCsv(std::string_view text, const std::string& name) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<CsvRow> rows;
  CsvRow row;
  std::string field;
  int64_t line = 1;
  size_t i = 0;
  const size_t n = text.size();
  auto error = [&](int64_t at, const std::string& what) {
    return Status::Invalid(name + ":" + std::to_string(at) + ": " + what);
  };
  // Validating per record keeps the error on the right line without a second pass.
  auto end_record = [&]() -> Status {
    row.fields.push_back(std::move(field));
    field.clear();
    for (const auto& f : row.fields)
      if (!IsValidUtf8(f)) return error(row.line, "field is not valid UTF-8");
    rows.push_back(std::move(row));
    row = CsvRow();
    return Status::Ok();
  };
  bool at_record_start = true;
  while (i < n) {
    if (at_record_start) {
      // An empty line carries no record (Python's csv module yields nothing for it either).
      if (text[i] == '\n') {
        ++line, ++i;
        continue;
      }
      if (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') {
        ++line, i += 2;
        continue;
      }
      row.line = line;
      at_record_start = false;
    }
    const char c = text[i];
    if (c == '"' && field.empty()) {
      // Quoted field: it must start right after a separator or at the start of the record.
      const int64_t open_line = line;
      ++i;
      for (;;) {
        if (i >= n) return error(open_line, "quoted field is never closed (unterminated '\"')");
        if (text[i] == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (text[i] == '\n') ++line;
        field.push_back(text[i++]);
      }
      // After the closing quote only a separator or the end of the record may follow.
      if (i >= n) break;
      if (text[i] == ',') {
        row.fields.push_back(std::move(field));
        field.clear();
        ++i;
        // Mark that the next field exists even if empty: handled by the ',' push above.
        continue;
      }
      if (text[i] == '\n' || (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n')) {
        i += text[i] == '\r' ? 2 : 1;
        RETURN_IF_ERROR(end_record());
        ++line;
        at_record_start = true;
        continue;
      }
      return error(line, std::string("unexpected character '") + text[i] +
                             "' after a closing quote (expected ',' or end of line)");
    }
    if (c == ',') {
      row.fields.push_back(std::move(field));
      field.clear();
      ++i;
      continue;
    }
    if (c == '\n' || (c == '\r' && i + 1 < n && text[i + 1] == '\n')) {
      i += c == '\r' ? 2 : 1;
      RETURN_IF_ERROR(end_record());
      ++line;
      at_record_start = true;
      continue;
    }
    if (c == '"')
      return error(line, "'\"' inside an unquoted field (quote the field and double the quote)");
    field.push_back(c);
    ++i;
  }
  if (!at_record_start) RETURN_IF_ERROR(end_record());
  return rows;
}

StatusOr<std::vector<CsvRow>> ReadCsvFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseCsv(text, path);
}

}  // namespace dsv3
