// Files: read-only memory maps, whole-file reads, and atomic writes (temp name, fsync,
// rename) so that no reader ever sees a half-written output under its final name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "engine/base/status.h"

namespace dsv3 {

class MappedFile {
 public:
  MappedFile() = default;
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept { *this = std::move(o); }
  MappedFile& operator=(MappedFile&& o) noexcept;

  static StatusOr<MappedFile> Open(const std::string& path);

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

StatusOr<std::string> ReadFile(const std::string& path);
bool FileExists(const std::string& path);
bool IsDirectory(const std::string& path);
// Joins a directory and a file name with exactly one '/'.
std::string JoinPath(const std::string& dir, const std::string& name);

// Writes through a temp file in the destination directory. Commit() fsyncs, renames onto
// the final path and fsyncs the directory; destruction without Commit() removes the temp.
class AtomicFile {
 public:
  explicit AtomicFile(std::string final_path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  Status Open();
  Status Write(const void* data, size_t n);
  Status Commit();
  const std::string& temp_path() const { return temp_path_; }

 private:
  std::string final_path_, temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Convenience: atomically replaces `path` with `contents`.
Status WriteFileAtomic(const std::string& path, const std::string& contents);

// Resolves symlinks and "..": used to refuse writing an output over its own input.
std::string RealPath(const std::string& path);

}  // namespace dsv3
