// The per-request result cache that makes `dsv3 eval` resumable: one JSON line per finished
// request, appended and flushed as results come in. Started again with the same arguments,
// a run finds its finished requests here and skips them. The file is append-only, so a
// kill can at worst tear the last line, which is dropped (and truncated away) on open.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "engine/base/status.h"

namespace dsv3 {

class RequestCache {
 public:
  ~RequestCache();
  // An empty path gives a cache that remembers nothing (no resume).
  static StatusOr<std::unique_ptr<RequestCache>> Open(const std::string& path);

  // The stored result (JSON text) for a key.
  std::optional<std::string> Lookup(const std::string& key) const;
  // Appends one entry; `result_json` must be a single-line JSON value.
  Status Append(const std::string& key, const std::string& result_json);
  // Makes appended entries durable (called after each batch).
  Status Sync();

  const std::string& path() const { return path_; }
  int64_t loaded() const { return loaded_; }
  bool dropped_torn_line() const { return dropped_torn_; }

 private:
  std::string path_;
  FILE* file_ = nullptr;
  std::map<std::string, std::string> entries_;
  int64_t loaded_ = 0;
  bool dropped_torn_ = false;
};

// A stable 128-bit hex digest of a string (two FNV-1a lanes): cache keys and fingerprints.
std::string StableHash(const std::string& text);

}  // namespace dsv3
