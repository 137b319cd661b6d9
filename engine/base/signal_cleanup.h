// Paths a run is writing that must not outlive it when it is interrupted: AtomicFile's temp
// files and quantize's staging directory. A kill by SIGINT (Ctrl-C), SIGTERM or SIGHUP had
// left them behind (a 5 GB init shard's temp, a quantized checkpoint's staging directory next
// to its destination); with InstallSignalCleanup the handler removes them, then the process
// dies of the signal as it would have. SIGKILL cannot be caught: a later run's names are new,
// so such leftovers never mix with results.
#pragma once

#include <string>

namespace dsv3 {

// Installs the handler for SIGINT, SIGTERM and SIGHUP (once, from main).
void InstallSignalCleanup();

// Registers `path` (a file, or a directory holding only files) for removal on those signals;
// returns a handle for UnregisterSignalCleanup, or -1 when every slot is taken (the path is
// then simply not cleaned up).
int RegisterSignalCleanup(const std::string& path, bool directory);
void UnregisterSignalCleanup(int handle);

}  // namespace dsv3
