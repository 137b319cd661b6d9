#include "engine/base/signal_cleanup.h"

#include <fcntl.h>
#include <linux/limits.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace dsv3 {

namespace {

// Fixed slots in static storage: the handler may run on any thread at any moment, so it only
// reads slots that are fully written (kReady) and calls only async-signal-safe functions.
constexpr int kSlots = 64;
enum : int { kFree = 0, kWriting = 1, kReady = 2 };
struct Slot {
  std::atomic<int> state{kFree};
  bool directory = false;
  char path[PATH_MAX];
};
Slot g_slots[kSlots];

struct LinuxDirent64 {
  uint64_t ino;
  int64_t off;
  unsigned short reclen;
  unsigned char type;
  char name[];
};

// The entries of `path` (files; a subdirectory only if empty), then `path`, by raw syscalls:
// opendir/readdir may allocate, which a signal handler must not.
void RemoveFlatDirectory(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    alignas(8) static char buf[16384];
    for (;;) {
      const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
      if (n <= 0) break;
      for (long at = 0; at < n;) {
        const auto* e = reinterpret_cast<const LinuxDirent64*>(buf + at);
        at += e->reclen;
        if (std::strcmp(e->name, ".") == 0 || std::strcmp(e->name, "..") == 0) continue;
        if (::unlinkat(fd, e->name, 0) != 0) ::unlinkat(fd, e->name, AT_REMOVEDIR);
      }
    }
    ::close(fd);
  }
  ::rmdir(path);
}

void OnSignal(int sig) {
  for (Slot& s : g_slots) {
    if (s.state.load(std::memory_order_acquire) != kReady) continue;
    if (s.directory) {
      RemoveFlatDirectory(s.path);
    } else {
      ::unlink(s.path);
    }
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void InstallSignalCleanup() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&sa.sa_mask, sig);  // one cleanup at a time
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

int RegisterSignalCleanup(const std::string& path, bool directory) {
  if (path.empty() || path.size() >= PATH_MAX) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = kFree;
    if (!g_slots[i].state.compare_exchange_strong(expected, kWriting, std::memory_order_acquire)) continue;
    std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
    g_slots[i].directory = directory;
    g_slots[i].state.store(kReady, std::memory_order_release);
    return i;
  }
  return -1;
}

void UnregisterSignalCleanup(int handle) {
  if (handle >= 0 && handle < kSlots) g_slots[handle].state.store(kFree, std::memory_order_release);
}

}  // namespace dsv3
