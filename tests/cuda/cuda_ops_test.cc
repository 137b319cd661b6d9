// CUDA ops (engine/kernels/cuda/cuda_ops.h) against their CPU twins (engine/kernels/ops.h) on
// random inputs. Every tolerance is a worst-case rounding bound derived next to its check,
// in units of u32 = 2^-24 (float32 unit roundoff) and ub = 2^-8 (bfloat16 unit roundoff),
// with gamma(n, u) = n·u / (1 - n·u), the classic bound on a length-n sum or dot product
// (Higham, ch. 3). A failure prints the worst element, its index, both values and its bound.
// Tests that need a GPU skip without one; the input checks and the no-device error path run
// everywhere CUDA is built. Run on a GPU machine: build/tests/test_cuda.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/base/dtype.h"
#include "engine/kernels/cuda/device.h"
#include "engine/kernels/ops.h"
#include "engine/quant/fp8.h"
#include "engine/tensor/tensor.h"
#include "tests/testing/testing.h"

#ifdef DSV3_HAVE_CUDA
#include "engine/kernels/cuda/cuda_ops.h"
#include "engine/kernels/cuda/device_buffer.h"
#endif

namespace dsv3 {
namespace {

#ifdef DSV3_HAVE_CUDA

#define DSV3_REQUIRE_GPU()                                                                    \
  do {                                                                                        \
    if (::dsv3::cuda::DeviceCount() == 0)                                                     \
      GTEST_SKIP() << "no CUDA device (or no driver) on this machine: the CUDA-vs-CPU check " \
                      "runs on a GPU machine (build/tests/test_cuda)";                        \
  } while (0)

constexpr double kU32 = 0x1p-24;  // float32 unit roundoff (round to nearest)
constexpr double kUb = 0x1p-8;    // bfloat16 unit roundoff

double Gamma(int64_t n, double u) { return double(n) * u / (1.0 - double(n) * u); }

using testing::RandomNormal;

// |got[i] - want[i]| <= tol[i] for all i; on failure names the element that exceeds its bound
// the most (relative to the bound).
::testing::AssertionResult WithinBounds(const std::vector<float>& got, const std::vector<float>& want,
                                        const std::vector<double>& tol, const std::string& what) {
  double worst_ratio = 0;
  int64_t worst = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    double err = std::fabs(double(got[i]) - want[i]);
    if (std::isnan(err)) err = INFINITY;
    const double ratio = err == 0 ? 0 : (tol[i] > 0 ? err / tol[i] : INFINITY);
    if (ratio > worst_ratio || worst < 0) {
      worst_ratio = ratio;
      worst = static_cast<int64_t>(i);
    }
  }
  std::ostringstream os;
  os << what << ": worst element " << worst << " cuda " << got[worst] << " vs cpu " << want[worst] << ", |diff| "
     << std::fabs(double(got[worst]) - want[worst]) << ", bound " << tol[worst];
  if (worst_ratio <= 1) return ::testing::AssertionSuccess() << os.str();
  return ::testing::AssertionFailure() << os.str();
}

// A weight matrix and the storage it views.
struct OwnedWeight {
  std::vector<uint8_t> bytes;
  std::vector<float> scale_inv;
  WeightMatrix m;
};

// Normal(0, 0.5) weights stored as `dtype`; FP8 through the checkpoint quantizer with
// block_out x block_in scale blocks (partial at the edges when the shape is not a multiple).
OwnedWeight MakeWeight(DType dtype, int64_t out, int64_t in, uint32_t seed, int64_t block_out = 128,
                       int64_t block_in = 128) {
  const std::vector<float> w = RandomNormal(out * in, 0.5f, seed);
  OwnedWeight o;
  if (dtype == DType::kF8E4M3) {
    Fp8Block q = QuantizeFp8Block(w.data(), out, in, block_out, block_in).value();
    o.bytes = std::move(q.q);
    o.scale_inv = std::move(q.scale_inv);
    const Shape scale_shape{(out + block_out - 1) / block_out, (in + block_in - 1) / block_in};
    o.m.scale_inv = TensorView{o.scale_inv.data(), DType::kF32, scale_shape};
    o.m.block_out = block_out;
    o.m.block_in = block_in;
  } else {
    o.bytes.resize(w.size() * DTypeSize(dtype));
    for (size_t i = 0; i < w.size(); ++i) {
      if (dtype == DType::kF32) reinterpret_cast<float*>(o.bytes.data())[i] = w[i];
      if (dtype == DType::kBF16) reinterpret_cast<uint16_t*>(o.bytes.data())[i] = F32ToBF16(w[i]);
    }
  }
  o.m.w = TensorView{o.bytes.data(), dtype, Shape{out, in}};
  return o;
}

// Error of a length-K float32 sum on tensor cores. They need not round to nearest: each step
// aligns a few exact products (at least 4 per step on Volta to Hopper) and the accumulator to
// the largest exponent and truncates (Fasi, Higham, Mikaitis, Pranesh, "Numerical behavior of
// NVIDIA tensor cores", PeerJ CS 2021). Charge each of the K products and each of the at most
// ceil(K/4) accumulator updates one truncation, 2·u32: gamma(K + ceil(K/4), 2·u32).
double TensorCoreSumBound(int64_t K) { return Gamma(K + (K + 3) / 4, 2 * kU32); }

// Relative error allowed in LinearCuda per unit of sum_k |x_k w_k| (w as the CPU dequantizes it).
//   CPU:  a float32 dot product of length K in some order: gamma(K, u32).
//   F32:  cuBLAS float32 GEMM (FMA, round to nearest), another order: gamma(K, u32).
//   BF16: x rounded to BF16 (ub per term); BF16 x BF16 products are exact in float32 and
//         summed on tensor cores: TensorCoreSumBound(K) on the magnitudes (1 + ub)·|x w|.
//   FP8:  as BF16, plus the weight's own rounding to BF16 on the device: (1+ub)^2 - 1 per term.
double LinearRelBound(DType dtype, int64_t K) {
  const double cpu = Gamma(K, kU32);
  switch (dtype) {
    case DType::kF32: return cpu + Gamma(K, kU32);
    case DType::kBF16: return cpu + kUb + (1 + kUb) * TensorCoreSumBound(K);
    default: return cpu + 2 * kUb + kUb * kUb + (1 + kUb) * (1 + kUb) * TensorCoreSumBound(K);
  }
}

void CheckLinear(const OwnedWeight& w, int64_t T, uint32_t seed) {
  const int64_t out = w.m.rows(), in = w.m.cols();
  const std::vector<float> x = RandomNormal(T * in, 1.0f, seed);
  std::vector<float> want(static_cast<size_t>(T * out)), got(want.size(), NAN);
  Linear(x.data(), T, w.m, want.data());
  const Status st = cuda::LinearCuda(x.data(), T, w.m, got.data());
  ASSERT_TRUE(st.ok()) << st.message();

  std::vector<float> wf(static_cast<size_t>(out * in));
  DequantizeRows(w.m, 0, out, wf.data());
  const double rel = LinearRelBound(w.m.w.dtype, in);
  std::vector<double> tol(want.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < out; ++r) {
      double mag = 0;
      for (int64_t k = 0; k < in; ++k) mag += std::fabs(double(x[t * in + k]) * wf[r * in + k]);
      tol[t * out + r] = rel * mag;  // bound: LinearRelBound(dtype, K) * sum_k |x_k w_k|
    }
  EXPECT_TRUE(WithinBounds(
      got, want, tol, std::string(DTypeName(w.m.w.dtype)) + " T=" + std::to_string(T) + " " + w.m.w.shape.ToString()));
}

// Shapes cut the 128-wide FP8 blocks and cuBLAS tiles at the edges; T=1 is the decode GEMV.
TEST(CudaOps, LinearF32MatchesCpu) {
  DSV3_REQUIRE_GPU();
  CheckLinear(MakeWeight(DType::kF32, 200, 300, 1), 1, 11);
  CheckLinear(MakeWeight(DType::kF32, 129, 513, 2), 33, 12);
}

TEST(CudaOps, LinearBf16MatchesCpu) {
  DSV3_REQUIRE_GPU();
  CheckLinear(MakeWeight(DType::kBF16, 200, 300, 3), 1, 13);
  CheckLinear(MakeWeight(DType::kBF16, 129, 2048, 4), 33, 14);
}

TEST(CudaOps, LinearFp8BlockMatchesCpu) {
  DSV3_REQUIRE_GPU();
  CheckLinear(MakeWeight(DType::kF8E4M3, 200, 300, 5), 1, 15);
  CheckLinear(MakeWeight(DType::kF8E4M3, 300, 200, 6, 32, 64), 7, 16);  // non-square blocks
}

// x = identity makes y[t, r] the device's BF16 weight W[r, t] itself: one nonzero product
// (1 · w, exact) plus exact zeros, so the comparison is exact. It checks the dequantize
// kernel's element and scale-block indexing bit for bit, apart from the GEMM.
void CheckExactDeviceWeights(const OwnedWeight& w) {
  const int64_t out = w.m.rows(), in = w.m.cols();
  std::vector<float> x(static_cast<size_t>(in * in), 0.0f), got(static_cast<size_t>(in * out), NAN);
  for (int64_t i = 0; i < in; ++i) x[i * in + i] = 1.0f;
  const Status st = cuda::LinearCuda(x.data(), in, w.m, got.data());
  ASSERT_TRUE(st.ok()) << st.message();
  std::vector<float> wf(static_cast<size_t>(out * in)), want(got.size());
  DequantizeRows(w.m, 0, out, wf.data());  // float32 e4m3 * scale_inv, as the device forms it
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c) want[c * out + r] = BF16ToF32(F32ToBF16(wf[r * in + c]));
  EXPECT_TRUE(WithinBounds(got, want, std::vector<double>(want.size(), 0.0),  // bound: exact
                           std::string("identity x, ") + DTypeName(w.m.w.dtype)));
}

TEST(CudaOps, LinearSeesExactDeviceWeights) {
  DSV3_REQUIRE_GPU();
  CheckExactDeviceWeights(MakeWeight(DType::kBF16, 70, 150, 7));
  CheckExactDeviceWeights(MakeWeight(DType::kF8E4M3, 70, 150, 8, 32, 64));
}

// The elementwise kernels cap their grid at 65535 blocks of 256 threads (16.8M elements) and
// loop over the rest. 4100 x 4200 = 17.2M weights (and as many activations: x is 4200 x 4200)
// take the dequantize and the rounding kernels into a second round, with partial 128-blocks
// at both edges, as a DeepSeek-V3 expert (2048 x 7168) or its attention matrices would not.
TEST(CudaOps, LinearSeesExactDeviceWeightsPastOneGridStride) {
  DSV3_REQUIRE_GPU();
  CheckExactDeviceWeights(MakeWeight(DType::kF8E4M3, 4100, 4200, 9));
}

// Sum of squares: D nonnegative terms, relative error gamma(D) on each side; the square root
// halves a relative error, so 1/rms is off by gamma(D)/2 per side. /D and +eps round once each
// (also halved by the root: u32 together), sqrt and 1/· once each, the two multiplies once
// each: 5·u32 per side. In all gamma(D) + 10·u32, to first order in u32; r/(1-r) covers the
// step from the exact value to the CPU's.
TEST(CudaOps, RmsNormMatchesCpu) {
  DSV3_REQUIRE_GPU();
  for (int64_t D : {7, 1000, 7168}) {
    const int64_t T = 5;
    const std::vector<float> x = RandomNormal(T * D, 3.0f, uint32_t(D));
    std::vector<uint16_t> wb(static_cast<size_t>(D));
    for (int64_t i = 0; i < D; ++i) wb[i] = F32ToBF16(1.0f + 0.1f * float(i % 7));
    const TensorView weight{wb.data(), DType::kBF16, Shape{D}};
    std::vector<float> want(x.size()), got(x.size(), NAN);
    RmsNorm(x.data(), weight, T, D, 1e-6f, want.data());
    const Status st = cuda::RmsNormCuda(x.data(), weight, T, D, 1e-6f, got.data());
    ASSERT_TRUE(st.ok()) << st.message();
    const double r = Gamma(D, kU32) + 10 * kU32;  // bound: (gamma(D) + 10·u32) · |y|
    std::vector<double> tol(want.size());
    for (size_t i = 0; i < want.size(); ++i) tol[i] = r / (1 - r) * std::fabs(want[i]);
    EXPECT_TRUE(WithinBounds(got, want, tol, "RmsNorm D=" + std::to_string(D)));
  }
}

// expf: glibc within 1 ulp (2·u32 relative), CUDA's expf within 2 ulp (4·u32). The relative
// error of e = exp(-g) passes to 1 + e at most unchanged (e / (1 + e) < 1); then 1 + e, the
// division and the multiply round once each: 3·u32 per side. In all (2+3) + (4+3) = 12·u32.
TEST(CudaOps, SiluMulMatchesCpu) {
  DSV3_REQUIRE_GPU();
  const int64_t n = 10007;
  std::vector<float> gate = RandomNormal(n, 3.0f, 21);
  const std::vector<float> up = RandomNormal(n, 1.0f, 22);
  gate[0] = -100.0f;  // exp(100) overflows to inf: silu is -0 on both sides
  gate[1] = 100.0f;   // exp(-100) is a float32 subnormal
  gate[2] = 0.0f;
  std::vector<float> want = gate, got = gate;
  SiluMul(want.data(), up.data(), n);
  const Status st = cuda::SiluMulCuda(got.data(), up.data(), n);
  ASSERT_TRUE(st.ok()) << st.message();
  const double r = 12 * kU32;  // bound: 12·u32 · |y|
  std::vector<double> tol(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) tol[i] = r / (1 - r) * std::fabs(want[i]);
  EXPECT_TRUE(WithinBounds(got, want, tol, "SiluMul"));
}

// x - max is the same correctly rounded subtraction on both sides (the max is exact). Per side:
// the element's exp (CPU 2·u32, GPU 4·u32), the sum of n positive terms (gamma(n) plus the
// terms' exp error), 1/sum and the multiply (2·u32). CPU gamma(n) + 6·u32, GPU gamma(n) + 10·u32.
TEST(CudaOps, SoftmaxRowsMatchesCpu) {
  DSV3_REQUIRE_GPU();
  for (int64_t n : {1, 5, 1000, 129280}) {  // 129280: the V3 vocabulary
    const int64_t rows = 4;
    std::vector<float> x = RandomNormal(rows * n, 4.0f, uint32_t(n));
    for (int64_t i = 0; i < n; ++i) x[i] += 1000.0f;  // row 0 overflows exp without the max shift
    std::vector<float> want = x, got = x;
    for (int64_t r = 0; r < rows; ++r) SoftmaxInPlace(want.data() + r * n, n);
    const Status st = cuda::SoftmaxRowsCuda(got.data(), rows, n);
    ASSERT_TRUE(st.ok()) << st.message();
    const double r = 2 * Gamma(n, kU32) + 16 * kU32;  // bound: (2·gamma(n) + 16·u32) · |p|
    std::vector<double> tol(want.size());
    for (size_t i = 0; i < want.size(); ++i) tol[i] = r / (1 - r) * std::fabs(want[i]);
    EXPECT_TRUE(WithinBounds(got, want, tol, "Softmax n=" + std::to_string(n)));
  }
}

TEST(CudaOps, DeviceBufferRoundTripAndMove) {
  DSV3_REQUIRE_GPU();
  const std::vector<float> host = RandomNormal(1000, 1.0f, 31);
  cuda::DeviceBuffer a;
  ASSERT_TRUE(a.Upload(host.data(), host.size() * sizeof(float)).ok());
  cuda::DeviceBuffer b = std::move(a);
  EXPECT_EQ(a.get(), nullptr);
  EXPECT_EQ(b.size(), host.size() * sizeof(float));
  std::vector<float> back(host.size());
  ASSERT_TRUE(b.Download(back.data(), back.size() * sizeof(float)).ok());
  EXPECT_EQ(back, host);
  EXPECT_FALSE(b.Download(back.data(), b.size() + 1).ok());
}

// Inputs are validated before any device work, so these hold with or without a GPU.
TEST(CudaOps, RejectsBadInputsBeforeTouchingTheDevice) {
  std::vector<float> x(16, 1.0f), y(16);
  std::vector<int8_t> q(16);
  WeightMatrix i8;
  i8.w = TensorView{q.data(), DType::kI8, Shape{4, 4}};
  Status st = cuda::LinearCuda(x.data(), 1, i8, y.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidInput);
  EXPECT_NE(st.message().find("LinearCuda: weight dtype I8 is not supported"), std::string::npos) << st.message();

  OwnedWeight fp8 = MakeWeight(DType::kF8E4M3, 4, 4, 41, 2, 2);  // scale_inv [2,2]
  fp8.m.scale_inv.shape = Shape{1, 2};
  st = cuda::LinearCuda(x.data(), 1, fp8.m, y.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidInput);
  EXPECT_NE(st.message().find("needs F32 scale_inv [2,2]"), std::string::npos) << st.message();

  const TensorView norm{x.data(), DType::kF32, Shape{3}};
  st = cuda::RmsNormCuda(x.data(), norm, 1, 4, 1e-6f, y.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidInput) << st.message();
  EXPECT_EQ(cuda::SoftmaxRowsCuda(x.data(), -1, 4).code(), StatusCode::kInvalidInput);
  EXPECT_EQ(cuda::SiluMulCuda(x.data(), y.data(), -1).code(), StatusCode::kInvalidInput);
}

// Without a usable device the ops fail with the CUDA error as a value, never a crash.
TEST(CudaOps, NoDeviceIsAnErrorValue) {
  if (cuda::DeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present: the no-device path is checked elsewhere";
  const OwnedWeight w = MakeWeight(DType::kBF16, 4, 4, 51);
  std::vector<float> x(4, 1.0f), y(4);
  const Status st = cuda::LinearCuda(x.data(), 1, w.m, y.data());
  EXPECT_EQ(st.code(), StatusCode::kRuntime);
  EXPECT_NE(st.message().find("LinearCuda: cuda"), std::string::npos) << st.message();
  const Status sm = cuda::SoftmaxRowsCuda(x.data(), 1, 4);
  EXPECT_NE(sm.message().find("SoftmaxRowsCuda: cuda"), std::string::npos) << sm.message();
}

#else  // !DSV3_HAVE_CUDA

TEST(CudaOps, SkippedWithoutCuda) {
  GTEST_SKIP() << "built without CUDA (DSV3_WITH_CUDA=OFF or no toolkit found): no CUDA ops to check";
}

#endif  // DSV3_HAVE_CUDA

}  // namespace
}  // namespace dsv3
