// Runs untrusted Python programs (model-written HumanEval completions) one process tree per
// program, isolated from the network, the file system and each other, under time, memory,
// process and output limits, with nothing left running afterwards.
//
// How each guarantee is made (bubblewrap mode, the default; see sandbox.cc for details; the
// unshare fallback for root without bwrap builds the same namespaces, mounts and init itself):
//   network    bwrap --unshare-net: a fresh network namespace with only a down loopback.
//   files      --ro-bind / /, a tmpfs masking /tmp and the sandbox parent dir, and one
//              private directory bound read-write as cwd, HOME and TMPDIR; /dev read-only.
//   identity   as root we drop to nobody (65534) before bwrap, so the program has no
//              privileges and RLIMIT_NPROC applies (the kernel exempts real root from it).
//   processes  RLIMIT_NPROC set inside the fresh user namespace, where it counts only this
//              sample's processes (so parallel workers do not share one budget).
//   time       a wall-clock deadline enforced by the caller, RLIMIT_CPU as a second line.
//   memory     RLIMIT_AS; files RLIMIT_FSIZE (a full disk is also a way to break the host).
//   output     stdout+stderr read through one pipe with a byte cap; over the cap is a kill.
//   cleanup    --unshare-pid: the kernel kills every process of the namespace when its
//              init dies; we kill that init and wait for bwrap, so when Run() returns no
//              process of the sample exists, even ones that called setsid() or forked.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

// passed: exit status 0. failed: the program ran and did not succeed (an exception, a
// nonzero exit, a signal, or it was stopped for exceeding the output, memory or file-size
// limit). timed_out: the wall-clock or CPU limit. error: the harness could not run or judge
// the program (spawn or temp-dir failure); never the program's fault, so it is counted
// separately and worth a look.
enum class Verdict { kPassed, kFailed, kTimedOut, kError };
const char* VerdictName(Verdict v);  // "passed", "failed", "timed_out", "error"

enum class SandboxMode {
  kAuto,        // bubblewrap, else unshare(2); never falls back to no isolation
  kBubblewrap,  // bwrap: network, mount, pid, user, ipc, uts namespaces
  kUnshare,     // root without bwrap: unshare(2) mount, network, pid, ipc and uts namespaces
                // and bwrap's file system, loopback and init built by dsv3, the program as
                // nobody in a user namespace of its own: the same guarantees as kBubblewrap
  kNone,        // plain fork/exec with rlimits: only with an explicit --unsafe-no-sandbox
};
const char* SandboxModeName(SandboxMode m);

struct SandboxOptions {
  SandboxMode mode = SandboxMode::kAuto;
  double timeout_s = 3.0;                  // wall clock per program; CPU limit is its ceiling
  int64_t memory_bytes = int64_t{2} << 30; // RLIMIT_AS (virtual; python3 itself maps ~30 MB)
  int max_processes = 64;                  // RLIMIT_NPROC inside the sample's user namespace
  int64_t max_output_bytes = int64_t{1} << 20;  // stdout+stderr; more is a kill
  int64_t max_file_bytes = int64_t{64} << 20;   // RLIMIT_FSIZE
  int workers = 0;                              // parallel programs in RunAll; 0 = #CPUs
  // Interpreter; "" tries `python3` on PATH, then /usr/bin/python3, and keeps the first the
  // sandbox user can run (a pyenv under /root is unreadable to nobody).
  std::string python;
  std::string temp_root;  // where private dirs are made; "" = $TMPDIR or /tmp
};

// Usage error for limits no sandbox runs with (Sandbox::Create checks them too).
Status CheckSandboxOptions(const SandboxOptions& options);

struct ExecResult {
  Verdict verdict = Verdict::kError;
  std::string reason;       // "" when passed; else e.g. "AssertionError", "timed out after 3 s"
  int exit_code = -1;       // the program's exit status when it exited, else -1
  int signal = 0;           // the signal that ended the program, else 0
  double wall_s = 0;
  std::string output_tail;  // last few KiB of stdout+stderr, for logs
};

class Sandbox {
 public:
  // Picks the mode (see SandboxMode), checks it works by running a probe program, and
  // returns an error naming what is missing when nothing safe is available.
  static StatusOr<std::unique_ptr<Sandbox>> Create(const SandboxOptions& options);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // Runs `program` as `python3 program.py` in a fresh private directory. Thread-safe.
  ExecResult Run(const std::string& program) const;
  // Runs every program with options.workers in parallel; results in input order.
  std::vector<ExecResult> RunAll(const std::vector<std::string>& programs) const;

  SandboxMode mode() const { return mode_; }
  const std::string& python() const { return python_; }
  const SandboxOptions& options() const { return options_; }
  // One line for logs and results.json: mode, interpreter, limits.
  std::string Describe() const;

 private:
  Sandbox() = default;
  SandboxOptions options_;
  SandboxMode mode_ = SandboxMode::kNone;
  std::string python_;   // absolute path of the interpreter
  std::string bwrap_;    // absolute path of bwrap in kBubblewrap mode
  std::string prlimit_;  // util-linux prlimit, sets RLIMIT_NPROC inside; "" = python does
  std::string parent_;   // this sandbox's directory holding one private dir per run
  int run_uid_ = -1;     // uid/gid to drop to (as root), -1 to keep ours
  int run_gid_ = -1;
};

}  // namespace dsv3
