// Progress on stderr: a bar with count, rate and ETA redrawn in place when stderr is a
// terminal; otherwise a plain line at most every few seconds (CI logs stay readable).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dsv3 {

class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();
  void Add(int64_t n);
  void Finish();

 private:
  void Draw(bool final);
  std::string label_;
  int64_t total_, done_ = 0;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace dsv3
