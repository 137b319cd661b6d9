// Next-token choice: greedy (temperature 0) or temperature / top-k / top-p sampling with a
// seeded generator, so a run with the same seed reproduces exactly.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;
  int64_t top_k = 0;  // 0: no limit
  uint64_t seed = 0;
};

// Usage error for settings no sampler takes (a negative or NaN temperature, top_p outside
// (0, 1], a negative top_k), naming the options as `prefix`temperature and so on.
Status CheckSampling(const SamplingParams& p, const std::string& prefix = "--");

// How many of x[0, n) are NaN or infinite (by the exponent bits, a loop the compiler
// vectorizes: a decode step checks its logits row, ~10 us for 129,280 of them).
int64_t CountNonFinite(const float* x, int64_t n);

// Index of the largest logit (the lowest index among ties).
int32_t ArgMax(const float* logits, int64_t n);

class Sampler {
 public:
  Sampler(const SamplingParams& p, uint64_t stream) : p_(p), rng_(p.seed * 0x9E3779B97F4A7C15ull + stream) {}
  int32_t Next(const float* logits, int64_t n);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  // Candidates a walk past the first ones sorts at least, and at most by partial sorts (Next).
  static constexpr int64_t kFirstSorted = 64, kMaxPartialSort = 512;
  std::vector<std::pair<float, int32_t>> cand_;  // (logit / temperature, token), sorted as walked
  std::vector<float> scaled_, exp_;              // by token: logit / temperature, exp(that - max)
  std::vector<std::pair<uint32_t, int32_t>> keys_, keys_tmp_;  // the radix sort's (Next)
  std::vector<std::pair<float, int32_t>> gathered_;
  std::vector<uint8_t> placed_;  // by token: among the sorted prefix (Next)
};

}  // namespace dsv3
