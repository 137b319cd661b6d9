// Sandbox: one process tree per untrusted program. The parent side (Run) owns the clock,
// the output cap and the kill; the child side (between fork and exec) only makes
// async-signal-safe calls, because the parent is multithreaded (RunAll).
//
// Process layout per run:
//   bwrap mode:    dsv3 -> [setsid, rlimits, setuid nobody] bwrap -> bwrap init (pid 1 of a
//                  new pid namespace) -> prlimit --nproc=N -> exec python3 program.py
//   unshare mode:  dsv3 -> [setsid, rlimits, unshare] intermediary -> init (pid 1 of the new
//                  pid namespace: as root builds bwrap's file system, /proc and loopback, then
//                  as nobody waits) -> [own user namespace] prlimit --nproc=N -> python3
//   none:          dsv3 -> [setsid, rlimits] intermediary -> python3
// Both report the pid of the namespace's first process on fd 3 as {"child-pid": N} (bwrap's
// --info-fd format); killing that process makes the kernel kill the whole namespace, and
// its parent (bwrap or the intermediary) exits only after the namespace is empty.
#include "eval/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

namespace dsv3 {

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kPassed: return "passed";
    case Verdict::kFailed: return "failed";
    case Verdict::kTimedOut: return "timed_out";
    case Verdict::kError: return "error";
  }
  return "error";
}

const char* SandboxModeName(SandboxMode m) {
  switch (m) {
    case SandboxMode::kAuto: return "auto";
    case SandboxMode::kBubblewrap: return "bubblewrap";
    case SandboxMode::kUnshare: return "unshare";
    case SandboxMode::kNone: return "none (UNSAFE)";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kTailBytes = 4096;
constexpr int kNobody = 65534;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string FindOnPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string dir = p.substr(start, end - start);
    if (!dir.empty()) {
      std::string cand = dir + "/" + name;
      if (::access(cand.c_str(), X_OK) == 0) return cand;
    }
    start = end + 1;
  }
  return "";
}

// Runs a trusted command (no sandbox) and returns its stdout, or "" on any failure. Used
// only to ask an interpreter for sys.executable: a pyenv shim is a bash script that the
// sandbox user cannot run, the interpreter behind it may be reachable.
std::string CaptureTrusted(const std::vector<std::string>& args) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return "";
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) ::dup2(null, 2);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while (pid > 0 && (n = ::read(fds[0], buf, sizeof buf)) > 0 && out.size() < 65536) out.append(buf, n);
  ::close(fds[0]);
  int status = 0;
  if (pid > 0) ::waitpid(pid, &status, 0);
  if (pid <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// Itoa for the child side (snprintf is not async-signal-safe): writes v's digits at buf[pos],
// returns the position after them.
int AppendNumber(char* buf, int pos, unsigned v) {
  char num[24];
  int len = 0;
  do {
    num[len++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (len) buf[pos++] = num[--len];
  return pos;
}

void WriteChildPid(int fd, pid_t pid) {
  char buf[64] = "{\"child-pid\": ";
  int pos = AppendNumber(buf, static_cast<int>(std::strlen(buf)), static_cast<unsigned>(pid));
  buf[pos++] = '}';
  buf[pos++] = '\n';
  (void)!::write(fd, buf, pos);
}

void ChildFail(const char* what) {
  const char* err = std::strerror(errno);  // reads a static table in glibc
  (void)!::write(2, "sandbox: ", 9);
  (void)!::write(2, what, std::strlen(what));
  (void)!::write(2, ": ", 2);
  (void)!::write(2, err, std::strlen(err));
  (void)!::write(2, "\n", 1);
  ::_exit(127);
}

bool DropPrivileges(int uid, int gid) {
  if (uid < 0) return true;
  return ::setgroups(0, nullptr) == 0 && ::setgid(gid) == 0 && ::setuid(uid) == 0;
}

// Everything the child needs, prepared before fork so the child does not allocate.
struct ChildPlan {
  SandboxMode mode;
  std::vector<std::string> args, env;
  std::vector<char*> argv, envp;
  std::string dir, parent;  // the sample's directory and the sandbox's, which holds it
  int uid = -1, gid = -1;
  rlim_t as = 0, cpu = 0, fsize = 0;
  int out_w = -1, info_w = -1, null_fd = -1;

  void Finish() {
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
};

// mkdir -p on the child side: each directory along the absolute `path`; existing ones are fine.
bool MakeDirs(const std::string& path) {
  char buf[4096];
  if (path.size() >= sizeof buf) {
    errno = ENAMETOOLONG;
    return false;
  }
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i < path.size() && path[i] != '/') continue;
    std::memcpy(buf, path.data(), i);
    buf[i] = '\0';
    if (::mkdir(buf, 0755) != 0 && errno != EEXIST) return false;
  }
  return true;
}

bool WriteFile(const char* path, const char* text, int len) {
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, text, len) == len;
  ::close(fd);
  return ok;
}

// Unshare mode, in pid 1 of the sample's namespaces, still root: the file system bwrap mode
// builds (everything read-only and nosuid; /tmp and the sandbox's parent directory masked by
// empty tmpfs, so other samples' directories and the host's /tmp are not there; the sample's
// own directory writable), a /proc of the sample's pid namespace, and the loopback up (as
// bwrap brings it up: a connection to the host's ports is refused, not unroutable). The mount
// namespace is made private first, so none of it reaches the host.
void IsolateAsRoot(const ChildPlan& p) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ChildFail("making the mounts private");
  const int dir_fd = ::open(p.dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);  // before /tmp hides it
  if (dir_fd < 0) ChildFail("opening the private directory");
  if (::mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") != 0)
    ChildFail("tmpfs on /tmp");
  if (!MakeDirs(p.parent) ||
      ::mount("tmpfs", p.parent.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0711,size=64k") != 0)
    ChildFail("tmpfs on the sandbox directory");
  char fd_path[64] = "/proc/self/fd/";
  fd_path[AppendNumber(fd_path, static_cast<int>(std::strlen(fd_path)), static_cast<unsigned>(dir_fd))] = '\0';
  if (!MakeDirs(p.dir) || ::mount(fd_path, p.dir.c_str(), nullptr, MS_BIND, nullptr) != 0)
    ChildFail("binding the private directory");
  ::close(dir_fd);
  mount_attr read_only{};
  read_only.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID;
  if (::mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, &read_only, sizeof read_only) != 0)
    ChildFail("making / read-only (mount_setattr: Linux 5.12 or later)");
  mount_attr writable{};
  writable.attr_clr = MOUNT_ATTR_RDONLY;
  if (::mount_setattr(AT_FDCWD, p.dir.c_str(), 0, &writable, sizeof writable) != 0)
    ChildFail("making the private directory writable");
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) ChildFail("mounting /proc");
  // The working directory was entered before the bind: it is still the read-only one beneath.
  if (::chdir(p.dir.c_str()) != 0) ChildFail("chdir");
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq lo{};
  std::memcpy(lo.ifr_name, "lo", 3);
  if (s < 0 || ::ioctl(s, SIOCGIFFLAGS, &lo) != 0) ChildFail("reading the loopback's flags");
  lo.ifr_flags = static_cast<short>(lo.ifr_flags | IFF_UP);
  if (::ioctl(s, SIOCSIFFLAGS, &lo) != 0) ChildFail("bringing the loopback up");
  ::close(s);
}

// "id id 1\n" into /proc/self/uid_map or gid_map: the id maps to itself, one id.
bool WriteIdMap(const char* path, int id) {
  char map[64];
  int len = AppendNumber(map, 0, static_cast<unsigned>(id));
  map[len++] = ' ';
  len = AppendNumber(map, len, static_cast<unsigned>(id));
  std::memcpy(map + len, " 1\n", 3);
  return WriteFile(path, map, len + 3);
}

// Unshare mode, as the sandbox user: a user namespace of the sample's own in which that user
// maps to itself. The kernel counts RLIMIT_NPROC per user namespace, so the limit then counts
// this sample's processes only (as in bwrap mode); without it every sample, all nobody,
// shared one budget and a fork bomb in one made fork fail in its neighbours.
void OwnUserNamespace(int uid, int gid) {
  ::prctl(PR_SET_DUMPABLE, 1);  // setuid gave /proc/self to root; the maps must be ours to write
  if (::unshare(CLONE_NEWUSER) != 0) ChildFail("user namespace");
  if (!WriteIdMap("/proc/self/uid_map", uid)) ChildFail("uid_map");
  if (!WriteFile("/proc/self/setgroups", "deny", 4)) ChildFail("setgroups");  // gid_map needs it
  if (!WriteIdMap("/proc/self/gid_map", gid)) ChildFail("gid_map");
}

// Unshare mode's pid 1, as bwrap's init: isolates the namespace, becomes the sandbox user,
// runs the program as its pid 2 and reaps every process until the program exits, then exits
// with its status (128+S for a signal S), which makes the kernel kill whatever the program
// left in the namespace. The program must not be pid 1: the kernel shields a namespace's
// init from its own members' signals, so a program that killed itself would live on; the
// init is shielded the same way from the program, which can signal it (same user) to no effect.
[[noreturn]] void RunInit(const ChildPlan& p) {
  IsolateAsRoot(p);
  if (!DropPrivileges(p.uid, p.gid)) ChildFail("dropping to the sandbox user");
  const pid_t program = ::fork();
  if (program < 0) ChildFail("fork");
  if (program == 0) {
    OwnUserNamespace(p.uid, p.gid);
    ::execve(p.argv[0], p.argv.data(), p.envp.data());
    ChildFail("exec python");
  }
  int status = 0;
  for (;;) {
    int s = 0;
    const pid_t done = ::waitpid(-1, &s, 0);
    if (done == program) {
      status = s;
      break;
    }
    if (done < 0 && errno != EINTR) ChildFail("waitpid");
  }
  if (WIFSIGNALED(status)) ::_exit(128 + WTERMSIG(status));
  ::_exit(WEXITSTATUS(status));
}

[[noreturn]] void RunChild(const ChildPlan& p) {
  ::setsid();  // own process group: the parent's last resort is kill(-pgid)
  if (::dup2(p.null_fd, 0) < 0 || ::dup2(p.out_w, 1) < 0 || ::dup2(p.out_w, 2) < 0 ||
      ::dup2(p.info_w, 3) < 0)
    ChildFail("dup2");
  ::syscall(SYS_close_range, 4u, ~0u, 0u);  // fds of other threads that lack O_CLOEXEC
  struct rlimit rl;
  rl = {p.as, p.as};
  if (::setrlimit(RLIMIT_AS, &rl) != 0) ChildFail("RLIMIT_AS");
  rl = {p.cpu, p.cpu + 1};  // SIGXCPU at the soft limit, SIGKILL one second later
  if (::setrlimit(RLIMIT_CPU, &rl) != 0) ChildFail("RLIMIT_CPU");
  rl = {p.fsize, p.fsize};
  if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) ChildFail("RLIMIT_FSIZE");
  rl = {0, 0};
  ::setrlimit(RLIMIT_CORE, &rl);
  if (::chdir(p.dir.c_str()) != 0) ChildFail("chdir");

  if (p.mode == SandboxMode::kBubblewrap) {
    // Drop to nobody first: bwrap then builds an unprivileged user namespace, and the
    // program is a real non-root user to whom RLIMIT_NPROC applies.
    if (!DropPrivileges(p.uid, p.gid)) ChildFail("dropping to the sandbox user");
    ::execve(p.argv[0], p.argv.data(), p.envp.data());
    ChildFail("exec bwrap");
  }
  if (p.mode == SandboxMode::kUnshare &&
      ::unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) != 0)
    ChildFail("unshare");
  // An intermediary, so a program that kills its parent kills this process, not dsv3.
  pid_t pid = ::fork();
  if (pid < 0) ChildFail("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::close(3);
    if (p.mode == SandboxMode::kUnshare) RunInit(p);
    if (!DropPrivileges(p.uid, p.gid)) ChildFail("dropping to the sandbox user");
    ::execve(p.argv[0], p.argv.data(), p.envp.data());
    ChildFail("exec python");
  }
  WriteChildPid(3, pid);
  ::close(3);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) ::_exit(128 + WTERMSIG(status));  // bwrap's convention
  ::_exit(WEXITSTATUS(status));
}

// Waits until `pid` is gone or a zombie (dead; only its parent's bookkeeping is left).
void WaitGone(pid_t pid, double max_s) {
  auto end = Clock::now() + std::chrono::duration<double>(max_s);
  std::string stat = "/proc/" + std::to_string(pid) + "/stat";
  while (Clock::now() < end) {
    int fd = ::open(stat.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[512];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return;
    buf[n] = 0;
    const char* rp = std::strrchr(buf, ')');
    if (!rp || rp[1] == 0 || rp[2] == 'Z' || rp[2] == 'X') return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// Waits for `pid` for at most max_s seconds; true when reaped.
bool ReapWithin(pid_t pid, int* status, double max_s) {
  auto end = Clock::now() + std::chrono::duration<double>(max_s);
  for (;;) {
    pid_t r = ::waitpid(pid, status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return true;
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::string LastLine(const std::string& s) {
  size_t end = s.size();
  while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == '\r' || s[end - 1] == ' ')) --end;
  size_t start = s.rfind('\n', end ? end - 1 : 0);
  start = (start == std::string::npos || end == 0) ? 0 : start + 1;
  std::string line = s.substr(start, end - start);
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

}  // namespace

Status CheckSandboxOptions(const SandboxOptions& options) {
  if (!(options.timeout_s > 0) || options.memory_bytes <= 0 || options.max_processes <= 0 ||
      options.max_output_bytes <= 0 || options.max_file_bytes <= 0 || options.workers < 0)
    return Status::Invalid("sandbox: timeout, memory, process, output and file limits must be "
                           "positive and workers >= 0");
  return Status::Ok();
}

StatusOr<std::unique_ptr<Sandbox>> Sandbox::Create(const SandboxOptions& options) {
  RETURN_IF_ERROR(CheckSandboxOptions(options));
  std::unique_ptr<Sandbox> sb(new Sandbox());
  sb->options_ = options;
  if (::geteuid() == 0) sb->run_uid_ = sb->run_gid_ = kNobody;
  sb->prlimit_ = FindOnPath("prlimit");

  std::string root = options.temp_root;
  if (root.empty()) {
    const char* t = std::getenv("TMPDIR");
    root = t && *t ? t : "/tmp";
  }
  std::string tmpl = root + "/dsv3_sandbox_XXXXXX";
  if (!::mkdtemp(tmpl.data()))
    return Status::Runtime("sandbox: cannot create a directory under " + root + ": " +
                           std::strerror(errno));
  sb->parent_ = tmpl;
  // Traversable but not listable: the sandbox user reaches its own dir by name only.
  ::chmod(sb->parent_.c_str(), 0711);

  std::vector<std::string> pythons;
  if (!options.python.empty()) {
    std::string p = FindOnPath(options.python);
    if (p.empty()) return Status::NotFound("sandbox: python interpreter not found: " + options.python);
    pythons.push_back(p);
  } else {
    std::string exe = CaptureTrusted({"python3", "-c", "import sys; print(sys.executable)"});
    if (!exe.empty()) pythons.push_back(exe);
    if (::access("/usr/bin/python3", X_OK) == 0 && exe != "/usr/bin/python3")
      pythons.push_back("/usr/bin/python3");
    if (pythons.empty()) return Status::NotFound("sandbox: no python3 on PATH or at /usr/bin/python3");
  }

  std::vector<SandboxMode> modes;
  if (options.mode == SandboxMode::kAuto)
    modes = {SandboxMode::kBubblewrap, SandboxMode::kUnshare};
  else
    modes = {options.mode};

  // A probe per (mode, interpreter): proves the namespaces can be made here and that the
  // sandbox user can run the interpreter, so a broken setup is one clear error up front
  // rather than 164 "error" verdicts.
  std::string tried;
  for (SandboxMode mode : modes) {
    if (mode == SandboxMode::kBubblewrap) {
      sb->bwrap_ = FindOnPath("bwrap");
      if (sb->bwrap_.empty()) {
        tried += "\n  bubblewrap: bwrap not found on PATH (Debian package bubblewrap)";
        continue;
      }
    }
    if (mode == SandboxMode::kUnshare && ::geteuid() != 0) {
      tried += "\n  unshare: needs root (CAP_SYS_ADMIN) to create namespaces without bwrap";
      continue;
    }
    sb->mode_ = mode;
    for (const std::string& py : pythons) {
      sb->python_ = py;
      ExecResult probe = sb->Run("import sys\nprint('dsv3-sandbox-ok')\n");
      if (probe.verdict == Verdict::kPassed &&
          probe.output_tail.find("dsv3-sandbox-ok") != std::string::npos)
        return sb;
      tried += "\n  " + std::string(SandboxModeName(mode)) + " with " + py + ": " +
               VerdictName(probe.verdict) + ": " + probe.reason;
    }
  }
  return Status::Runtime(
      "sandbox: cannot run python in any sandbox:" + tried +
      "\nInstall bubblewrap (and allow user namespaces), run as root, or pass "
      "--unsafe-no-sandbox to execute untrusted code WITHOUT isolation.");
}

Sandbox::~Sandbox() {
  std::error_code ec;
  if (!parent_.empty()) std::filesystem::remove_all(parent_, ec);
}

std::string Sandbox::Describe() const {
  return std::string("sandbox=") + SandboxModeName(mode_) + " python=" + python_ +
         " timeout_s=" + FormatSeconds(options_.timeout_s) +
         " memory_bytes=" + std::to_string(options_.memory_bytes) +
         " max_processes=" + std::to_string(options_.max_processes) +
         " max_output_bytes=" + std::to_string(options_.max_output_bytes) +
         (run_uid_ >= 0 ? " uid=" + std::to_string(run_uid_) : "");
}

ExecResult Sandbox::Run(const std::string& program) const {
  ExecResult res;
  const auto start = Clock::now();
  auto fail = [&](const std::string& why) {
    res.verdict = Verdict::kError;
    res.reason = why + ": " + std::strerror(errno);
    res.wall_s = Seconds(start, Clock::now());
    return res;
  };

  // The private directory: cwd, HOME and TMPDIR of the program, owned by the run user.
  std::string dir = parent_ + "/run_XXXXXX";
  if (!::mkdtemp(dir.data())) return fail("creating the private directory");
  struct DirGuard {
    std::string path;
    ~DirGuard() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } dir_guard{dir};
  const std::string file = dir + "/program.py";
  {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return fail("writing program.py");
    size_t off = 0;
    while (off < program.size()) {
      ssize_t n = ::write(fd, program.data() + off, program.size() - off);
      if (n <= 0) {
        ::close(fd);
        return fail("writing program.py");
      }
      off += n;
    }
    ::close(fd);
  }
  if (run_uid_ >= 0 && (::chown(dir.c_str(), run_uid_, run_gid_) != 0 ||
                        ::chown(file.c_str(), run_uid_, run_gid_) != 0))
    return fail("chown of the private directory");

  ChildPlan plan;
  plan.mode = mode_;
  plan.dir = dir;
  plan.parent = parent_;
  plan.uid = run_uid_;
  plan.gid = run_gid_;
  plan.as = static_cast<rlim_t>(options_.memory_bytes);
  plan.cpu = static_cast<rlim_t>(std::ceil(options_.timeout_s));
  plan.fsize = static_cast<rlim_t>(options_.max_file_bytes);
  // RLIMIT_NPROC is set just before the interpreter starts: in bwrap mode that is inside
  // the new user namespace, where the kernel counts only this sample's
  // processes against it. Set before bwrap, every sample (all running as nobody) would
  // share one budget and a fork bomb in one would make fork fail in the others.
  // util-linux prlimit (essential in Debian) costs nothing; without it a python preamble
  // sets the limit and execs the program, which doubles the interpreter start-up.
  const std::string n = std::to_string(options_.max_processes);
  std::vector<std::string> py_args;
  if (!prlimit_.empty()) {
    py_args = {prlimit_, "--nproc=" + n, python_, "program.py"};
  } else {
    const std::string preamble =
        "import os, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NPROC, (" + n + ", " + n + "))\n"
        "os.execv(sys.executable, [sys.executable, 'program.py'])\n";
    py_args = {python_, "-c", preamble};
  }
  if (mode_ == SandboxMode::kBubblewrap) {
    plan.args = {bwrap_,
                 "--unshare-user", "--unshare-net", "--unshare-pid", "--unshare-ipc",
                 "--unshare-uts", "--unshare-cgroup-try",
                 "--die-with-parent", "--new-session",
                 "--ro-bind", "/", "/",
                 "--dev", "/dev", "--proc", "/proc",
                 // Hide other samples' dirs and the host's /tmp; only `dir` is writable.
                 "--tmpfs", "/tmp", "--tmpfs", parent_, "--bind", dir, dir,
                 "--remount-ro", parent_, "--remount-ro", "/tmp", "--remount-ro", "/dev",
                 "--chdir", dir, "--info-fd", "3", "--"};
    plan.args.insert(plan.args.end(), py_args.begin(), py_args.end());
  } else {
    plan.args = py_args;
  }
  plan.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir, "TMPDIR=" + dir,
              "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"};
  plan.Finish();

  int out[2], info[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return fail("pipe");
  if (::pipe2(info, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return fail("pipe");
  }
  plan.out_w = out[1];
  plan.info_w = info[1];
  plan.null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  pid_t pid = ::fork();
  if (pid == 0) RunChild(plan);
  ::close(out[1]);
  ::close(info[1]);
  if (plan.null_fd >= 0) ::close(plan.null_fd);
  if (pid < 0) {
    ::close(out[0]);
    ::close(info[0]);
    return fail("fork");
  }
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);
  ::fcntl(info[0], F_SETFL, O_NONBLOCK);
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));

  enum class Cause { kExited, kTimeout, kOutput } cause = Cause::kTimeout;
  const auto deadline = start + std::chrono::duration<double>(options_.timeout_s);
  int64_t total_out = 0;
  std::string tail, info_text;
  int out_fd = out[0], info_fd = info[0];
  int status = 0;
  auto read_out = [&]() {  // false when over the cap
    char buf[65536];
    ssize_t r;
    while ((r = ::read(out_fd, buf, sizeof buf)) > 0) {
      total_out += r;
      tail.append(buf, r);
      if (tail.size() > 2 * kTailBytes) tail.erase(0, tail.size() - kTailBytes);
      if (total_out > options_.max_output_bytes) return false;
    }
    if (r == 0) {
      ::close(out_fd);
      out_fd = -1;
    }
    return true;
  };
  auto read_info = [&]() {
    char buf[1024];
    ssize_t r;
    while ((r = ::read(info_fd, buf, sizeof buf)) > 0 && info_text.size() < 65536)
      info_text.append(buf, r);
    if (r == 0) {
      ::close(info_fd);
      info_fd = -1;
    }
  };
  for (;;) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      cause = Cause::kExited;
      break;
    }
    auto now = Clock::now();
    if (now >= deadline) {
      cause = Cause::kTimeout;
      break;
    }
    int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1;
    if (pidfd < 0) ms = std::min(ms, 10);  // no pidfd (old kernel): poll the child
    pollfd fds[3];
    int nfds = 0;
    if (out_fd >= 0) fds[nfds++] = {out_fd, POLLIN, 0};
    if (info_fd >= 0) fds[nfds++] = {info_fd, POLLIN, 0};
    if (pidfd >= 0) fds[nfds++] = {pidfd, POLLIN, 0};
    if (::poll(fds, nfds, ms) < 0 && errno != EINTR) ms = 0;
    if (info_fd >= 0) read_info();
    if (out_fd >= 0 && !read_out()) {
      cause = Cause::kOutput;
      break;
    }
  }

  auto child_pid = [&]() -> pid_t {
    if (info_fd >= 0) read_info();
    size_t at = info_text.find("\"child-pid\":");
    return at == std::string::npos ? 0 : std::atoi(info_text.c_str() + at + 12);
  };
  if (cause != Cause::kExited) {
    // Kill the namespace's first process: the kernel then kills every process in the
    // namespace, and its parent exits only once the namespace is empty. Only if that does
    // not happen promptly do we kill the whole process group.
    pid_t inner = child_pid();
    if (inner > 0) ::kill(inner, SIGKILL);
    if (!ReapWithin(pid, &status, 2.0)) {
      ::kill(-pid, SIGKILL);
      ReapWithin(pid, &status, 1e9);
    }
    if (inner > 0) WaitGone(inner, 2.0);
  }
  // Whatever is left in the group (in kNone mode, say, a program's background children).
  ::kill(-pid, SIGKILL);
  pid_t inner = child_pid();
  if (inner > 0 && cause == Cause::kExited && ::kill(inner, 0) == 0) {
    ::kill(inner, SIGKILL);  // bwrap killed before the namespace was set up: finish it
    WaitGone(inner, 2.0);
  }
  if (out_fd >= 0 && cause != Cause::kOutput && !read_out()) cause = Cause::kOutput;
  if (out_fd >= 0) ::close(out_fd);
  if (info_fd >= 0) ::close(info_fd);
  if (pidfd >= 0) ::close(pidfd);
  res.wall_s = Seconds(start, Clock::now());
  res.output_tail = tail.size() > kTailBytes ? tail.substr(tail.size() - kTailBytes) : tail;

  if (cause == Cause::kTimeout) {
    res.verdict = Verdict::kTimedOut;
    res.reason = "timed out after " + FormatSeconds(options_.timeout_s) + " s (wall clock)";
    return res;
  }
  if (cause == Cause::kOutput) {
    res.verdict = Verdict::kFailed;
    res.reason = "output limit exceeded (more than " + std::to_string(options_.max_output_bytes) +
                 " bytes)";
    return res;
  }
  if (inner <= 0) {
    // The sandbox never started the program: bwrap or the child side failed.
    res.verdict = Verdict::kError;
    res.reason = "sandbox failed to start: " + LastLine(tail);
    return res;
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (code == 0) {
    res.verdict = Verdict::kPassed;
    res.exit_code = 0;
    return res;
  }
  // bwrap and the intermediary report a program killed by signal S as exit 128+S.
  if (code > 128 && code < 128 + 65) {
    res.signal = code - 128;
    if (res.signal == SIGXCPU) {
      res.verdict = Verdict::kTimedOut;
      res.reason = "CPU time limit (" + std::to_string(plan.cpu) + " s)";
      return res;
    }
    res.verdict = Verdict::kFailed;
    res.reason = res.signal == SIGXFSZ ? "file size limit exceeded (" +
                                             std::to_string(options_.max_file_bytes) + " bytes)"
                                       : "killed by " + SignalName(res.signal);
    return res;
  }
  res.exit_code = code;
  res.verdict = Verdict::kFailed;
  std::string last = LastLine(tail);
  res.reason = last.empty() ? "exit status " + std::to_string(code) : last;
  return res;
}

std::vector<ExecResult> Sandbox::RunAll(const std::vector<std::string>& programs) const {
  std::vector<ExecResult> results(programs.size());
  int workers = options_.workers > 0 ? options_.workers
                                     : static_cast<int>(std::thread::hardware_concurrency());
  workers = std::max(1, std::min<int>(workers, static_cast<int>(programs.size())));
  std::atomic<size_t> next{0};
  auto work = [&]() {
    for (size_t i; (i = next.fetch_add(1)) < programs.size();) results[i] = Run(programs[i]);
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < workers; ++t) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  return results;
}

}  // namespace dsv3
