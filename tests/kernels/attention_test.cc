// The multi-query attention products (decode over MLA's latent cache) against their reference
// twin: every query count around the kernels' register blocks (4 queries per key pass, 3 per
// weighted-sum pass), widths with and without a tail of C % 8, accumulate on and off, and
// rows that must not be touched. Skips where the CPU lacks AVX2.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/ops.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed) { return testing::RandomNormal(n, 1.0f, seed); }

class MultiQueryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GetCpuFeatures().HasAvx2Set()) GTEST_SKIP() << "CPU lacks AVX2+FMA+F16C";
  }
  void TearDown() override { SetLinearKernel(LinearKernel::kAuto); }
};

// Both are float32 sums of n products in different orders: within n * eps * sum|products|.
void ExpectWithinSumBound(float fast, float ref, double magnitude, int64_t n, const std::string& what) {
  const double tol = double(n) * std::numeric_limits<float>::epsilon() * magnitude + 1e-30;
  EXPECT_LE(std::fabs(double(fast) - ref), tol) << what << ": fast " << fast << " reference " << ref;
}

TEST_F(MultiQueryTest, ScoresMatchTheReference) {
  uint32_t seed = 1;
  for (int64_t C : {256, 32, 37}) {
    for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 9}) {
      for (int64_t S : {1, 13, 100}) {
        for (bool accumulate : {false, true}) {
          const int64_t ldq = C + 3, lds = S + 2;  // strides wider than the rows
          const auto q = Random(M * ldq, seed++), keys = Random(S * C, seed++), init = Random(M * lds, seed++);
          std::vector<float> ref = init, fast = init;
          SetLinearKernel(LinearKernel::kReference);
          MultiQueryScores(q.data(), M, ldq, keys.data(), S, C, ref.data(), lds, accumulate);
          SetLinearKernel(LinearKernel::kAvx2);
          MultiQueryScores(q.data(), M, ldq, keys.data(), S, C, fast.data(), lds, accumulate);
          const std::string what = "C=" + std::to_string(C) + " M=" + std::to_string(M) + " S=" + std::to_string(S) +
                                   (accumulate ? " accumulate" : "");
          for (int64_t m = 0; m < M; ++m) {
            for (int64_t s = 0; s < lds; ++s) {
              const size_t i = static_cast<size_t>(m * lds + s);
              if (s >= S) {
                ASSERT_EQ(fast[i], init[i]) << what << ": wrote past S at m=" << m;
                continue;
              }
              double mag = accumulate ? std::fabs(init[i]) : 0.0;
              for (int64_t c = 0; c < C; ++c) mag += std::fabs(double(q[m * ldq + c]) * keys[s * C + c]);
              ExpectWithinSumBound(fast[i], ref[i], mag, C + 1, what);
            }
          }
        }
      }
    }
  }
}

TEST_F(MultiQueryTest, WeightedSumMatchesTheReference) {
  uint32_t seed = 100;
  for (int64_t C : {256, 40, 37}) {
    for (int64_t M : {1, 2, 3, 4, 6, 7}) {
      for (int64_t S : {1, 13, 100}) {
        const int64_t ldp = S + 5;
        const auto p = Random(M * ldp, seed++), vals = Random(S * C, seed++);
        std::vector<float> ref(static_cast<size_t>(M * C), 7.0f), fast = ref;
        SetLinearKernel(LinearKernel::kReference);
        MultiQueryWeightedSum(p.data(), M, ldp, vals.data(), S, C, ref.data());
        SetLinearKernel(LinearKernel::kAvx2);
        MultiQueryWeightedSum(p.data(), M, ldp, vals.data(), S, C, fast.data());
        const std::string what = "C=" + std::to_string(C) + " M=" + std::to_string(M) + " S=" + std::to_string(S);
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t c = 0; c < C; ++c) {
            double mag = 0;
            for (int64_t s = 0; s < S; ++s) mag += std::fabs(double(p[m * ldp + s]) * vals[s * C + c]);
            ExpectWithinSumBound(fast[m * C + c], ref[m * C + c], mag, S, what);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsv3
