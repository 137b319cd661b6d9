#include "eval/progress.h"

#include <unistd.h>

#include <cstdio>

namespace dsv3 {

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total), tty_(::isatty(2) == 1),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() { Finish(); }

void Progress::Add(int64_t n) {
  done_ += n;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.2 : 10.0)) Draw(false);
}

void Progress::Finish() {
  if (finished_) return;
  finished_ = true;
  Draw(true);
}

void Progress::Draw(bool final) {
  last_draw_ = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(last_draw_ - start_).count();
  const double rate = elapsed > 0 ? done_ / elapsed : 0;
  const double eta = rate > 0 ? (total_ - done_) / rate : 0;
  char eta_text[32];
  std::snprintf(eta_text, sizeof eta_text, "%d:%02d", static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
  if (tty_) {
    const int width = 30, filled = total_ > 0 ? static_cast<int>(width * done_ / total_) : width;
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %.2f/s ETA %s%s", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_), rate, eta_text, final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s: %lld/%lld done, %.2f/s, ETA %s\n", label_.c_str(), static_cast<long long>(done_),
                 static_cast<long long>(total_), rate, eta_text);
  }
  std::fflush(stderr);
}

}  // namespace dsv3
