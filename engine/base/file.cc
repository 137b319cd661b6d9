#include "engine/base/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <random>

#include "engine/base/signal_cleanup.h"

namespace dsv3 {

namespace {
std::string ErrnoText() { return std::strerror(errno); }
// Why open(path) failed, as the user's mistake (no such file, a file where a directory
// should be) or the machine's (permissions, limits).
Status OpenError(const std::string& path) {
  if (errno == ENOENT) return Status::NotFound(path + ": no such file");
  if (errno == ENOTDIR) return Status::NotFound(path + ": no such file (a part of the path is a file)");
  return Status::Runtime(path + ": cannot open: " + ErrnoText());
}
}  // namespace

MappedFile::~MappedFile() {
  if (data_ && size_) munmap(const_cast<uint8_t*>(data_), size_);
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_ && size_) munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

StatusOr<MappedFile> MappedFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return OpenError(path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return Status::Runtime(path + ": cannot stat: " + ErrnoText());
  }
  if (S_ISDIR(st.st_mode)) {  // opens, then fails to map as "No such device"
    ::close(fd);
    return Status::Invalid(path + ": a directory, not a file");
  }
  MappedFile m;
  m.path_ = path;
  m.size_ = static_cast<size_t>(st.st_size);
  if (m.size_ > 0) {
    void* p = mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      m.size_ = 0;
      return Status::Runtime(path + ": mmap failed: " + ErrnoText());
    }
    m.data_ = static_cast<const uint8_t*>(p);
    // Weights are streamed whole once per decoded token: with 4 KiB pages every page is a TLB
    // miss (a nested page walk under a hypervisor) and the hardware prefetchers stop at each
    // page's end. This asks the kernel to read the file into 2 MiB folios and map those with
    // 2 MiB pages (file systems with large folios); the pages a file already has in the page
    // cache keep their size (see AtomicFile for the files dsv3 writes). Advice only: a kernel
    // without it changes nothing.
#ifdef MADV_HUGEPAGE
    madvise(p, m.size_, MADV_HUGEPAGE);
#endif
  }
  ::close(fd);
  return m;
}

bool PopulateMapping(const void* p, size_t n) {
  if (p == nullptr || n == 0) return true;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + n;
#ifdef MADV_POPULATE_READ
  return madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ) == 0;
#else
  return false;
#endif
}

StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return OpenError(path);
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {  // opens, then fails to read as "Is a directory"
    ::close(fd);
    return Status::Invalid(path + ": a directory, not a file");
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return Status::Runtime(path + ": read failed: " + ErrnoText());
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Status CheckOutputPath(const std::string& path, const std::string& flag) {
  if (path.empty()) return Status::Invalid(flag + " is empty");
  if (IsDirectory(path)) return Status::Invalid(flag + " " + path + ": a directory, not a file");
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (!IsDirectory(dir)) return Status::Invalid(flag + " " + path + ": no directory " + dir);
  return Status::Ok();
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

std::string RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  return path;
}

AtomicFile::AtomicFile(std::string final_path) : final_path_(std::move(final_path)) {}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
  UnregisterSignalCleanup(cleanup_);
}

bool AtomicFile::IsTempName(const std::string& name, std::string* final_name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at == 0) return false;
  // PID.N: two runs of digits around one dot.
  const std::string rest = name.substr(at + 5);
  const size_t dot = rest.find('.');
  const auto digits = [](const std::string& t) {
    return !t.empty() && t.find_first_not_of("0123456789") == std::string::npos;
  };
  if (dot == std::string::npos || !digits(rest.substr(0, dot)) || !digits(rest.substr(dot + 1))) return false;
  if (final_name) *final_name = name.substr(0, at);
  return true;
}

Status AtomicFile::Open() {
  std::random_device rd;
  temp_path_ = final_path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd() % 1000000);
  // Removed if the run is interrupted. Registered before the file exists: a signal between the
  // two had left the temp behind (a SIGTERM sent as soon as it appeared, under ASan's slower run).
  cleanup_ = RegisterSignalCleanup(temp_path_, /*directory=*/false);
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    std::string why = ErrnoText();
    UnregisterSignalCleanup(cleanup_);
    cleanup_ = -1;
    temp_path_.clear();
    return Status::Runtime(final_path_ + ": cannot create temp file: " + why);
  }
  return Status::Ok();
}

Status AtomicFile::Write(const void* data, size_t n) {
  // Always through pending_, even whole chunks: write() straight from a source that is itself a
  // memory map (a tensor copied from a checkpoint) takes page faults mid-copy, and the kernel
  // then halves the folio size for the rest of that call (the lm_head of an INT8 copy of
  // bench-v3-mini was cached in small pages).
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const size_t take = std::min(n, kChunkBytes - pending_.size());
    pending_.insert(pending_.end(), p, p + take);
    p += take;
    n -= take;
    if (pending_.size() == kChunkBytes) {
      RETURN_IF_ERROR(WriteThrough(pending_.data(), pending_.size()));
      pending_.clear();
    }
  }
  return Status::Ok();
}

Status AtomicFile::WriteThrough(const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::Runtime(final_path_ + ": write failed: " + ErrnoText());
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

Status AtomicFile::Commit() {
  RETURN_IF_ERROR(WriteThrough(pending_.data(), pending_.size()));
  pending_.clear();
  if (::fsync(fd_) != 0) return Status::Runtime(final_path_ + ": fsync failed: " + ErrnoText());
  ::close(fd_);
  fd_ = -1;
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0)
    return Status::Runtime(final_path_ + ": rename failed: " + ErrnoText());
  committed_ = true;
  UnregisterSignalCleanup(cleanup_);
  cleanup_ = -1;
  // fsync the directory so the rename itself survives a crash.
  std::string dir = final_path_.substr(0, final_path_.find_last_of('/') + 1);
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  RETURN_IF_ERROR(f.Open());
  RETURN_IF_ERROR(f.Write(contents.data(), contents.size()));
  return f.Commit();
}

}  // namespace dsv3
