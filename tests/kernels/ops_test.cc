// The element-wise operators split across the thread pool (RmsNorm by token rows, SiluMul by
// elements) give the same bits for any thread count, and those of a plain loop (SiluMul's AVX2
// path: within a few ulp of it); softmax's AVX2 path the bits of its steps done one by one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <vector>

#include "engine/base/dtype.h"
#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/ops.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

class ElementwiseOpsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    SetNumThreads(0);
    SetLinearKernel(LinearKernel::kAuto);
  }
};

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  // (memcmp of two empty vectors' null data() is undefined, even for 0 bytes)
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_F(ElementwiseOpsTest, RmsNormRowsMatchOneThreadAndAPlainLoop) {
  const int64_t T = 300, D = 1536;  // a prefill's worth of rows: split across the threads
  const std::vector<float> x = testing::RandomNormal(T * D, 1.0f, 1), w = testing::RandomNormal(D, 1.0f, 2);
  // The weight in BF16 (as checkpoints store norms: converted once, on the calling thread) and
  // in F32 holding the same values.
  std::vector<uint16_t> w16(static_cast<size_t>(D));
  std::vector<float> wf(static_cast<size_t>(D));
  for (int64_t i = 0; i < D; ++i) {
    w16[i] = F32ToBF16(w[i]);
    wf[i] = BF16ToF32(w16[i]);
  }
  std::vector<float> plain(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t) {
    float ss = 0.0f;
    for (int64_t i = 0; i < D; ++i) ss += x[t * D + i] * x[t * D + i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(D) + 1e-6f);
    for (int64_t i = 0; i < D; ++i) plain[t * D + i] = x[t * D + i] * inv * wf[i];
  }
  for (const DType dtype : {DType::kF32, DType::kBF16}) {
    TensorView weight;
    weight.dtype = dtype;
    weight.shape = Shape{D};
    weight.data = dtype == DType::kF32 ? static_cast<const void*>(wf.data()) : static_cast<const void*>(w16.data());
    for (int threads : {1, 2, 3}) {
      SetNumThreads(threads);
      std::vector<float> y(static_cast<size_t>(T * D), -1.0f);
      RmsNorm(x.data(), weight, T, D, 1e-6f, y.data());
      EXPECT_TRUE(SameBits(y, plain)) << DTypeName(dtype) << ", " << threads << " threads";
    }
  }
}

// The reference kernel is the plain loop, bit for bit; the AVX2 one (exp from ExpShiftedSum's
// polynomial, within 3 ulp) within a few ulp of it. Both give the same bits on any thread count.
TEST_F(ElementwiseOpsTest, SiluMulMatchesOneThreadAndAPlainLoop) {
  const int64_t n = 100003;  // several chunks and a ragged end
  std::vector<float> gate = testing::RandomNormal(n, 3.0f, 3);
  const std::vector<float> up = testing::RandomNormal(n, 1.0f, 4);
  const float specials[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 20.0f, -20.0f, 87.0f, -87.0f, 89.0f, 100.0f, -80.0f};
  for (size_t i = 0; i < std::size(specials); ++i) gate[i * 7] = specials[i];
  std::vector<float> plain(gate);
  for (int64_t i = 0; i < n; ++i) plain[i] = plain[i] / (1.0f + std::exp(-plain[i])) * up[i];
  const bool have_avx2 = GetCpuFeatures().HasAvx2Set();
  for (const LinearKernel kernel : {LinearKernel::kReference, LinearKernel::kAvx2}) {
    if (kernel == LinearKernel::kAvx2 && !have_avx2) continue;
    SetLinearKernel(kernel);
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      SetNumThreads(threads);
      std::vector<float> g(gate);
      SiluMul(g.data(), up.data(), n);
      if (kernel == LinearKernel::kReference) EXPECT_TRUE(SameBits(g, plain)) << threads << " threads";
      if (first.empty()) first = g;
      EXPECT_TRUE(SameBits(g, first)) << threads << " threads";
    }
    if (kernel == LinearKernel::kAvx2) {
      for (int64_t i = 0; i < n; ++i)
        ASSERT_LE(std::fabs(first[i] - plain[i]), 8 * std::ldexp(std::fabs(plain[i]), -23) + 1e-30f)
            << "gate " << gate[i] << " up " << up[i];
      // Tails of every length go through the vector code too.
      for (int64_t len = 1; len < 8; ++len) {
        std::vector<float> g(gate.begin(), gate.begin() + len);
        SiluMul(g.data(), up.data(), len);
        for (int64_t i = 0; i < len; ++i) EXPECT_EQ(g[i], first[i]) << len;
      }
    }
  }
  SetLinearKernel(LinearKernel::kAuto);
  std::vector<float> nan = {NAN, 1.0f};
  const std::vector<float> ones = {1.0f, 1.0f};
  SiluMul(nan.data(), ones.data(), 2);
  EXPECT_TRUE(std::isnan(nan[0]));
}

// Gates far below zero take exp(-gate) to the top of float32's range and past it: the AVX2
// path must follow std::exp there too (finite up to 88.72, then +inf, so silu is -0), within
// the same 8 ulp relative and with no absolute slack (its results are ~1e-37 and 0). The
// check the CUDA twin runs found the clamped exp giving g / 2.4e38 for gate -100.
TEST_F(ElementwiseOpsTest, SiluMulAvx2FollowsExpToOverflow) {
  if (!GetCpuFeatures().HasAvx2Set()) GTEST_SKIP() << "CPU lacks AVX2+FMA+F16C";
  const std::vector<float> gate = {-80.0f,  -88.3f,  -88.38f, -88.4f, -88.5f,  -88.7f,  -88.72f, -88.73f,
                                   -88.75f, -89.0f,  -89.5f,  -100.0f, -1e4f,  -3e38f,  -INFINITY};
  for (const float sign : {1.0f, -1.0f}) {
    const std::vector<float> up(gate.size(), 0.75f * sign);
    std::vector<float> plain(gate);
    for (size_t i = 0; i < gate.size(); ++i) plain[i] = plain[i] / (1.0f + std::exp(-plain[i])) * up[i];
    SetLinearKernel(LinearKernel::kAvx2);
    std::vector<float> g(gate);
    SiluMul(g.data(), up.data(), static_cast<int64_t>(g.size()));
    SetLinearKernel(LinearKernel::kAuto);
    for (size_t i = 0; i < gate.size(); ++i) {
      if (plain[i] == 0.0f || std::isnan(plain[i])) {
        EXPECT_TRUE(SameBits({g[i]}, {plain[i]})) << "gate " << gate[i] << ": " << g[i] << " vs " << plain[i];
      } else {
        EXPECT_LE(std::fabs(g[i] - plain[i]), 8 * std::ldexp(std::fabs(plain[i]), -23))
            << "gate " << gate[i] << ": " << g[i] << " vs " << plain[i];
      }
    }
  }
}

// The AVX2 softmax vectorizes the max and the products: the same bits as those steps one
// element at a time around the same exponentials (ExpShiftedSum), for lengths around the
// vector width, -inf entries (probability 0) and a scale.
TEST_F(ElementwiseOpsTest, SoftmaxAvx2GivesTheBitsOfItsStepsOneByOne) {
  if (!GetCpuFeatures().HasAvx2Set()) GTEST_SKIP() << "CPU lacks AVX2+FMA+F16C";
  SetLinearKernel(LinearKernel::kAvx2);
  uint32_t seed = 40;
  for (int64_t n : {1, 7, 8, 9, 100}) {
    for (float scale : {1.0f, 0.125f}) {
      auto x = testing::RandomNormal(n, 1.0f, seed++);
      for (int64_t i = 3; i < n; i += 5) x[i] *= 30.0f;
      if (n > 2) x[1] = -std::numeric_limits<float>::infinity();
      std::vector<float> want = x, got = x;
      float m = -std::numeric_limits<float>::infinity();
      for (float& v : want) {
        v *= scale;
        m = std::max(m, v);
      }
      const float inv = 1.0f / ExpShiftedSum(want.data(), n, m);
      for (float& v : want) v *= inv;
      SoftmaxInPlace(got.data(), n, scale);
      if (n > 0) ASSERT_EQ(std::memcmp(got.data(), want.data(), n * sizeof(float)), 0) << "n=" << n << " scale=" << scale;
      double sum = 0.0;
      for (float v : got) sum += v;
      EXPECT_NEAR(sum, 1.0, 1e-5) << "n=" << n;
    }
  }
}

// The MoE's weighted sum: y += a · x with the product rounded before the sum, on either path
// (the AVX2 one eight at a time, its last n % 8 alone), at lengths around the vector width and
// one split across the threads, on 1 and 2 threads; with a = 1, the residual add, a plain sum.
// Fused multiply-adds would give other bits for some of these elements.
TEST_F(ElementwiseOpsTest, AddScaledRoundsTheProductOnEveryPath) {
  std::vector<LinearKernel> kernels = {LinearKernel::kReference};
  if (GetCpuFeatures().HasAvx2Set()) kernels.push_back(LinearKernel::kAvx2);
  uint32_t seed = 80;
  for (int64_t n : {0, 1, 7, 8, 9, 1539, 100003}) {  // the last split across the threads
    const auto x = testing::RandomNormal(n, 1.0f, seed++), y = testing::RandomNormal(n, 1.0f, seed++);
    const float a = 0.3728f;
    std::vector<float> want(y);
    int fused_differs = 0;
    for (int64_t i = 0; i < n; ++i) {
      volatile float product = a * x[i];  // rounded here, whatever the compiler may contract
      want[i] = y[i] + product;
      fused_differs += std::fma(a, x[i], y[i]) != want[i];
    }
    if (n > 1000) EXPECT_GT(fused_differs, 0) << "the data cannot tell a fused multiply-add apart";
    std::vector<float> sum(y);  // a = 1: the residual add, the plain sum's bits
    for (int64_t i = 0; i < n; ++i) sum[i] += x[i];
    for (LinearKernel k : kernels) {
      SetLinearKernel(k);
      for (int threads : {1, 2}) {
        SetNumThreads(threads);
        std::vector<float> got(y), got_sum(y);
        AddScaled(got.data(), x.data(), a, n);
        AddScaled(got_sum.data(), x.data(), 1.0f, n);
        EXPECT_TRUE(SameBits(got, want)) << "n=" << n << " kernel " << static_cast<int>(k) << ", " << threads << " threads";
        EXPECT_TRUE(SameBits(got_sum, sum)) << "n=" << n << " a = 1, kernel " << static_cast<int>(k);
      }
    }
  }
}

// Decode attention's partials take softmax's first step alone: the AVX2 path's products are
// the reference's bits and its maximum the same value, for lengths around the vector width
// (0: -inf), with -inf and NaN entries passed over.
TEST_F(ElementwiseOpsTest, ScaleAndMaxAvx2MatchesItsReference) {
  if (!GetCpuFeatures().HasAvx2Set()) GTEST_SKIP() << "CPU lacks AVX2+FMA+F16C";
  uint32_t seed = 60;
  for (int64_t n : {0, 1, 7, 8, 9, 17, 100}) {
    for (float scale : {1.0f, 0.125f}) {
      auto x = testing::RandomNormal(n, 1.0f, seed++);
      if (n > 2) x[1] = -std::numeric_limits<float>::infinity();
      if (n > 9) x[9] = std::numeric_limits<float>::quiet_NaN();
      if (n > 16) x[16] = 1e3f;
      if (n > 26) {  // the largest, then a NaN in the same lane
        x[10] = 2e3f;
        x[18] = std::numeric_limits<float>::quiet_NaN();
      }
      std::vector<float> want = x, got = x;
      SetLinearKernel(LinearKernel::kReference);
      const float want_max = ScaleAndMax(want.data(), n, scale);
      SetLinearKernel(LinearKernel::kAvx2);
      const float got_max = ScaleAndMax(got.data(), n, scale);
      EXPECT_EQ(got_max, want_max) << "n=" << n << " scale=" << scale;
      EXPECT_FALSE(std::isnan(got_max)) << "n=" << n;
      if (n > 16) EXPECT_EQ(got_max, (n > 26 ? 2e3f : 1e3f) * scale);
      if (n == 0) EXPECT_EQ(got_max, -std::numeric_limits<float>::infinity());
      if (n > 0) ASSERT_EQ(std::memcmp(got.data(), want.data(), n * sizeof(float)), 0) << "n=" << n << " scale=" << scale;
    }
  }
  SetLinearKernel(LinearKernel::kAuto);
}

// Scoring's log-partition: every path within a few float ulps (in relative terms) of the sum
// of double exponentials, the same bits for any thread count (fixed chunks, added in order),
// for lengths around the vector width and the chunk; -inf adds nothing, NaN gives NaN.
TEST_F(ElementwiseOpsTest, LogSumExpShiftedFollowsTheDoubleSumOnEveryPath) {
  std::vector<LinearKernel> kernels = {LinearKernel::kReference};
  if (GetCpuFeatures().HasAvx2Set()) kernels.push_back(LinearKernel::kAvx2);
  uint32_t seed = 80;
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{9}, int64_t{100}, kLogSumExpChunk + 3, int64_t{129280}}) {
    auto x = testing::RandomNormal(n, 3.0f, seed++);
    if (n > 5) x[5] = -std::numeric_limits<float>::infinity();
    const float m = *std::max_element(x.begin(), x.end());
    double exact = 0.0;
    for (float v : x) exact += std::exp(static_cast<double>(v) - static_cast<double>(m));
    for (LinearKernel k : kernels) {
      SetLinearKernel(k);
      SetNumThreads(1);
      const double one = LogSumExpShifted(x.data(), n, m);
      SetNumThreads(2);
      const double two = LogSumExpShifted(x.data(), n, m);
      EXPECT_EQ(std::memcmp(&one, &two, sizeof one), 0) << "n=" << n << " " << LinearKernelName(k);
      // 3 ulp of float per exponential (the AVX2 polynomial), and the float subtraction's rounding
      EXPECT_NEAR(one, std::log(exact), 1e-6) << "n=" << n << " " << LinearKernelName(k);
      if (n == 1) EXPECT_EQ(one, 0.0);  // exp(0) = 1 on every path
    }
    x[n / 2] = std::numeric_limits<float>::quiet_NaN();
    for (LinearKernel k : kernels) {
      SetLinearKernel(k);
      EXPECT_TRUE(std::isnan(LogSumExpShifted(x.data(), n, m))) << "n=" << n << " " << LinearKernelName(k);
    }
  }
}

}  // namespace
}  // namespace dsv3
