// Files: read-only memory maps, whole-file reads, and atomic writes (temp name, fsync,
// rename) so that no reader ever sees a half-written output under its final name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

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

// Enters the pages of [p, p + n), part of a read-only file mapping, into this process's page
// tables now (MADV_POPULATE_READ; the file is read where the page cache lacks it), so that
// reading them later takes no page fault. For a tensor read sparsely, as the token embedding
// is (one row per token): every other weight is streamed whole by the first forward pass,
// but each new token's row could fault its page, and under this hypervisor a fault that maps
// a 2 MiB page cost 70-300 us (bench-v3-mini INT4-h decode: 42-49 -> 16-19 us a token in the
// embedding step). False where the kernel lacks the advice (before Linux 5.14): the pages then
// fault in as read.
bool PopulateMapping(const void* p, size_t n);

StatusOr<std::string> ReadFile(const std::string& path);
bool FileExists(const std::string& path);
bool IsDirectory(const std::string& path);
// Usage error unless `path` can name an output file (`flag` names the option): not a
// directory, and its directory exists. Checked before long work, whose results would
// otherwise be lost at the end.
Status CheckOutputPath(const std::string& path, const std::string& flag);
// Joins a directory and a file name with exactly one '/'.
std::string JoinPath(const std::string& dir, const std::string& name);

// Writes through a temp file in the destination directory. Commit() fsyncs, renames onto
// the final path and fsyncs the directory; destruction without Commit() removes the temp.
// Writes reach the file in whole kChunkBytes pieces at multiples of kChunkBytes (the last
// piece shorter): Linux then caches the file in 2 MiB folios where the file system allows
// (ext4 since 6.16, xfs), which MappedFile's readers map with 2 MiB pages (see there). A
// checkpoint written a tensor at a time was cached in small pages, and decode, which streams
// every weight once per token, ran 10-20% slower on TLB misses (README, Speed).
class AtomicFile {
 public:
  explicit AtomicFile(std::string final_path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  static constexpr size_t kChunkBytes = size_t{4} << 20;

  Status Open();
  Status Write(const void* data, size_t n);
  Status Commit();
  const std::string& temp_path() const { return temp_path_; }

  // Whether `name` is a temp file's name (FINAL.tmp.PID.N, as Open makes it), and if so the
  // final name it was for. A run killed outright (SIGKILL: a caught signal removes the temp)
  // leaves one behind.
  static bool IsTempName(const std::string& name, std::string* final_name);

 private:
  Status WriteThrough(const char* p, size_t n);  // straight to the file

  std::string final_path_, temp_path_;
  int fd_ = -1;
  int cleanup_ = -1;  // the temp file's RegisterSignalCleanup handle
  bool committed_ = false;
  std::vector<char> pending_;  // bytes not yet written, fewer than kChunkBytes
};

// Convenience: atomically replaces `path` with `contents`.
Status WriteFileAtomic(const std::string& path, const std::string& contents);

// Resolves symlinks and "..": used to refuse writing an output over its own input.
std::string RealPath(const std::string& path);

}  // namespace dsv3
