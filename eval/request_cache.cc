#include "eval/request_cache.h"

#include <unistd.h>

#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "datasets/jsonl.h"
#include "engine/base/file.h"

namespace dsv3 {

std::string StableHash(const std::string& text) {
  uint64_t a = 1469598103934665603ull, b = 0x84222325cbf29ce4ull;
  for (unsigned char ch : text) {
    a = (a ^ ch) * 1099511628211ull;
    b = (b ^ (ch + 0x9b)) * 0x100000001b3ull;
    b ^= b >> 29;
  }
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
  return buf;
}

RequestCache::~RequestCache() {
  if (file_) std::fclose(file_);
}

StatusOr<std::unique_ptr<RequestCache>> RequestCache::Open(const std::string& path) {
  auto c = std::unique_ptr<RequestCache>(new RequestCache());
  c->path_ = path;
  if (path.empty()) return c;
  if (FileExists(path)) {
    JsonlStats stats;
    Status st = ForEachJsonlLine(path, TornLastLine::kTolerate, [&](const JsonlLine& line) -> Status {
      auto j = nlohmann::json::parse(line.text, nullptr, false);
      if (!j.is_object() || !j.contains("key") || !j["key"].is_string() || !j.contains("result"))
        return Status::Invalid("not a cache entry ({\"key\", \"result\"}); delete the file to start over");
      c->entries_[j["key"].get<std::string>()] = j["result"].dump();
      return Status::Ok();
    }, &stats);
    if (!st.ok()) return st;
    c->loaded_ = static_cast<int64_t>(c->entries_.size());
    if (stats.torn_last_line) {
      // Half a record from a killed run: cut it off so appends start on a clean line.
      c->dropped_torn_ = true;
      if (::truncate(path.c_str(), static_cast<off_t>(stats.valid_bytes)) != 0)
        return Status::Runtime(path + ": cannot truncate a torn last line: " + std::strerror(errno));
    }
  }
  c->file_ = std::fopen(path.c_str(), "ab");
  if (!c->file_) return Status::Runtime(path + ": cannot open for appending: " + std::strerror(errno));
  return c;
}

std::optional<std::string> RequestCache::Lookup(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

Status RequestCache::Append(const std::string& key, const std::string& result_json) {
  entries_[key] = result_json;
  if (!file_) return Status::Ok();
  std::string line = "{\"key\":\"" + key + "\",\"result\":" + result_json + "}\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size())
    return Status::Runtime(path_ + ": write failed");
  return Status::Ok();
}

Status RequestCache::Sync() {
  if (!file_) return Status::Ok();
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) return Status::Runtime(path_ + ": flush failed");
  return Status::Ok();
}

}  // namespace dsv3
