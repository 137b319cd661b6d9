// Test helpers: where ../shared is (tests that need it skip when it is absent), temp dirs,
// running the dsv3 binary, and tensor comparison that reports the worst element.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/tensor/tensor.h"

namespace dsv3::testing {

// ../shared next to the source tree, or "" when absent.
std::string SharedDir();
std::string SourceDir();
std::string Dsv3Binary();

#define DSV3_REQUIRE_SHARED()                                                       \
  do {                                                                              \
    if (::dsv3::testing::SharedDir().empty())                                       \
      GTEST_SKIP() << "../shared is absent (a user's fresh clone): skipping a test " \
                      "that reads the shared reference data";                       \
  } while (0)

// A fresh directory under $TMPDIR removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs `dsv3 ARGS...` (no shell), capturing stdout and stderr.
RunResult RunDsv3(const std::vector<std::string>& args);

// n draws of N(0, stddev^2) from mt19937 seeded with `seed` (the same numbers on every run).
std::vector<float> RandomNormal(int64_t n, float stddev, uint32_t seed);

// Max |a-b| over two float arrays; on failure the message names the worst index and values.
::testing::AssertionResult AllClose(const float* a, const float* b, int64_t n, double atol,
                                    const std::string& what = "");

// For logits [positions, vocab] that may move by a rounding (bf16 activations or cache): how many
// positions have every |got - want| <= tol, and the largest of those positions' worst
// differences (above zero where the rounding moved them).
struct NearPositions {
  size_t near = 0;
  double typical = 0;
};
NearPositions CountNearPositions(const float* got, const float* want, size_t positions, size_t vocab, double tol);

}  // namespace dsv3::testing
