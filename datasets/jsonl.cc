// JSONL over zlib's gzFile: gzread decompresses gzip and passes plain files through
// unchanged, so one loop serves both; lines are cut from a streaming buffer, never from the
// whole file at once (LongBench files are large).
#include "datasets/jsonl.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

namespace dsv3 {

bool IsJson(std::string_view text, std::string* why) {
  // accept() validates without building a tree; only a failure pays for the message.
  if (nlohmann::json::accept(text.begin(), text.end())) return true;
  if (why) {
    try {
      nlohmann::json j = nlohmann::json::parse(text.begin(), text.end());
      *why = "unknown parse error";
    } catch (const nlohmann::json::parse_error& e) {
      *why = e.what();
    }
  }
  return false;
}

namespace {

class GzReader {
 public:
  ~GzReader() {
    if (f_) gzclose(f_);
  }
  Status Open(const std::string& path) {
    path_ = path;
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) {
      if (errno == ENOENT) return Status::NotFound(path + ": no such file");
      return Status::Runtime(path + ": cannot open: " + std::strerror(errno));
    }
    gzbuffer(f_, 1 << 17);
    return Status::Ok();
  }
  // Appends up to `n` bytes to `out`; returns bytes read (0 at the end).
  StatusOr<size_t> Read(std::string* out, size_t n) {
    const size_t old = out->size();
    out->resize(old + n);
    const int got = gzread(f_, out->data() + old, static_cast<unsigned>(n));
    int errnum = Z_OK;
    const char* msg = gzerror(f_, &errnum);
    if (got < 0 || (errnum != Z_OK && errnum != Z_STREAM_END)) {
      out->resize(old);
      return Status::Invalid(std::string("corrupt or truncated gzip data: ") + (msg ? msg : "?"));
    }
    out->resize(old + static_cast<size_t>(got));
    return static_cast<size_t>(got);
  }

 private:
  std::string path_;
  gzFile f_ = nullptr;
};

}  // namespace

Status ForEachJsonlLine(const std::string& path, TornLastLine torn,
                        const std::function<Status(const JsonlLine&)>& fn, JsonlStats* stats) {
  JsonlStats local;
  JsonlStats& st = stats ? *stats : local;
  st = JsonlStats();
  GzReader reader;
  RETURN_IF_ERROR(reader.Open(path));
  std::string buf;
  size_t start = 0;  // first byte of the current, unfinished line in buf
  int64_t line_no = 0;
  uint64_t consumed = 0;  // uncompressed bytes before buf[0]
  bool eof = false;
  auto where = [&](int64_t l) { return path + ":" + std::to_string(l) + ": "; };
  auto handle = [&](std::string_view text, bool has_newline, uint64_t end_offset) -> Status {
    ++line_no;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    std::string why;
    const bool blank = text.find_first_not_of(" \t") == std::string_view::npos;
    const bool ok = !blank && IsJson(text, &why);
    if (!ok) {
      if (!has_newline && torn == TornLastLine::kTolerate) {
        st.torn_last_line = true;
        return Status::Ok();
      }
      if (blank)
        return Status::Invalid(where(line_no) + "line " + std::to_string(line_no) +
                               " is empty (expected one JSON value per line)");
      return Status::Invalid(where(line_no) + "line " + std::to_string(line_no) +
                             " is not JSON: " + why);
    }
    Status s = fn(JsonlLine{line_no, text});
    if (!s.ok()) return s.WithPrefix(where(line_no));
    ++st.lines;
    st.valid_bytes = end_offset;
    return Status::Ok();
  };
  while (!eof) {
    auto got = reader.Read(&buf, 1 << 18);
    if (!got.ok()) {
      return got.status().WithPrefix(path + ": after line " + std::to_string(line_no) + ": ");
    }
    if (*got == 0) eof = true;
    size_t nl;
    while ((nl = buf.find('\n', start)) != std::string::npos) {
      RETURN_IF_ERROR(
          handle(std::string_view(buf).substr(start, nl - start), true, consumed + nl + 1));
      start = nl + 1;
    }
    // Keep only the unfinished tail so memory stays bounded by the longest line.
    buf.erase(0, start);
    consumed += start;
    start = 0;
  }
  if (!buf.empty()) RETURN_IF_ERROR(handle(buf, false, consumed + buf.size()));
  return Status::Ok();
}

}  // namespace dsv3
