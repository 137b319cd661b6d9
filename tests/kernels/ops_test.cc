// The element-wise operators split across the thread pool (RmsNorm by token rows, SiluMul by
// elements) give the same bits for any thread count, and those of a plain loop.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/base/dtype.h"
#include "engine/base/threads.h"
#include "engine/kernels/ops.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

class ElementwiseOpsTest : public ::testing::Test {
 protected:
  void TearDown() override { SetNumThreads(0); }
};

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
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

TEST_F(ElementwiseOpsTest, SiluMulMatchesOneThreadAndAPlainLoop) {
  const int64_t n = 100003;  // several chunks and a ragged end
  const std::vector<float> gate = testing::RandomNormal(n, 3.0f, 3), up = testing::RandomNormal(n, 1.0f, 4);
  std::vector<float> plain(gate);
  for (int64_t i = 0; i < n; ++i) plain[i] = plain[i] / (1.0f + std::exp(-plain[i])) * up[i];
  for (int threads : {1, 2, 3}) {
    SetNumThreads(threads);
    std::vector<float> g(gate);
    SiluMul(g.data(), up.data(), n);
    EXPECT_TRUE(SameBits(g, plain)) << threads << " threads";
  }
}

}  // namespace
}  // namespace dsv3
