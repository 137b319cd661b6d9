// ArgMax against the plain scan it replaces, on the cases where a blocked search could differ:
// ties within and across blocks, NaN anywhere, infinities, signed zeros, ragged ends.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/model/sampler.h"

namespace dsv3 {
namespace {

int32_t PlainArgMax(const std::vector<float>& x) {
  int64_t best = 0;
  for (int64_t i = 1; i < static_cast<int64_t>(x.size()); ++i)
    if (x[i] > x[best]) best = i;
  return static_cast<int32_t>(best);
}

TEST(ArgMaxTest, MatchesThePlainScan) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> small(-3, 3);  // few distinct values: many ties
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{8}, int64_t{9}, int64_t{2047}, int64_t{2048}, int64_t{2049},
                    int64_t{5000}, int64_t{129280}}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = static_cast<float>(small(rng));
      std::uniform_int_distribution<int64_t> at(0, n - 1);
      switch (trial % 5) {
        case 1: x[at(rng)] = NAN; x[at(rng)] = NAN; break;
        case 2: x[0] = -INFINITY; x[at(rng)] = INFINITY; x[at(rng)] = INFINITY; break;
        case 3: for (float& v : x) v = v > 0 ? -0.0f : v == 0 ? 0.0f : v; break;  // max is +-0
        case 4: x[at(rng)] = 100.0f; x[n - 1] = 100.0f; break;  // the largest, twice
        default: break;
      }
      ASSERT_EQ(ArgMax(x.data(), n), PlainArgMax(x)) << "n " << n << " trial " << trial;
    }
  }
}

TEST(ArgMaxTest, NanFirstAndAllEqual) {
  std::vector<float> x(3000, -INFINITY);
  EXPECT_EQ(ArgMax(x.data(), 3000), 0);  // all -inf: the first
  x[2500] = NAN;
  EXPECT_EQ(ArgMax(x.data(), 3000), 0);
  x[2999] = -1.0f;
  EXPECT_EQ(ArgMax(x.data(), 3000), 2999);
  x[0] = NAN;  // the scan never leaves a NaN at 0
  EXPECT_EQ(ArgMax(x.data(), 3000), 0);
  std::vector<float> y(4100, 2.5f);
  EXPECT_EQ(ArgMax(y.data(), 4100), 0);
  y[4099] = 2.6f;
  EXPECT_EQ(ArgMax(y.data(), 4100), 4099);
}

}  // namespace
}  // namespace dsv3
