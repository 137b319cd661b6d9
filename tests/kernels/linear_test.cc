// The fast Linear kernels against their twin (float32 tiles + Eigen), for every weight format
// they take, token counts on both sides of the GEMV/GEMM switch, and odd shapes (row tails,
// K not a multiple of 16, FP8 scale blocks cut by the edge). Skips where the CPU lacks AVX2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"
#include "engine/quant/int_quant.h"
#include "tests/testing/testing.h"
#include "tests/testing/weights.h"

namespace dsv3 {
namespace {

using testing::Fp8Raw;
using testing::MakeIntWeight;
using testing::MakeWeight;
using testing::OwnedWeight;

std::vector<float> RandomVector(int64_t n, uint32_t seed) { return testing::RandomNormal(n, 1.0f, seed); }

// Both sides are float32 dot products of length K summed in different orders; each is within
// gamma_K * sum|x*w| (gamma_K ~ K * 2^-24) of the exact value, so they differ by at most
// K * 2^-23 * sum|x*w|.
void ExpectClose(const std::vector<float>& x, const WeightMatrix& w, int64_t T, const std::vector<float>& fast,
                 const std::vector<float>& ref, const std::string& what) {
  const int64_t out = w.rows(), in = w.cols();
  std::vector<float> wf(static_cast<size_t>(out * in));
  DequantizeRows(w, 0, out, wf.data());
  double worst_excess = -1;
  int64_t worst = -1;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t r = 0; r < out; ++r) {
      double mag = 0;
      for (int64_t k = 0; k < in; ++k) mag += std::fabs(double(x[t * in + k]) * wf[r * in + k]);
      const double tol = double(in) * std::numeric_limits<float>::epsilon() * mag;
      const double err = std::fabs(double(fast[t * out + r]) - ref[t * out + r]);
      if (err > tol && err - tol > worst_excess) {
        worst_excess = err - tol;
        worst = t * out + r;
      }
    }
  }
  EXPECT_EQ(worst, -1) << what << ": worst element [" << worst / out << ", " << worst % out << "] fast "
                       << (worst >= 0 ? fast[worst] : 0) << " reference " << (worst >= 0 ? ref[worst] : 0);
}

// The fast kernel families this CPU runs: AVX2, and AVX2 with AVX-512 where present.
std::vector<LinearKernel> FastKernels() {
  std::vector<LinearKernel> k = {LinearKernel::kAvx2};
  if (GetCpuFeatures().HasAvx512VnniSet()) k.push_back(LinearKernel::kAvx512);
  return k;
}

class LinearKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GetCpuFeatures().HasAvx2Set()) GTEST_SKIP() << "CPU lacks AVX2+FMA+F16C (" << GetCpuFeatures().ToString() << ")";
    // The float32 kernels of every format; int8 activations have linear_q8_test.cc.
    SetLinearActivations(LinearActivations::kF32);
  }
  void TearDown() override {
    SetLinearKernel(LinearKernel::kAuto);
    SetLinearActivations(LinearActivations::kInt8);
  }
};

TEST_F(LinearKernelTest, Avx2MatchesReferenceForEveryFormatAndShape) {
  const DType dtypes[] = {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3};
  const int64_t shapes[][2] = {{37, 96}, {64, 83}, {5, 200}};  // rows, cols
  const int64_t token_counts[] = {1, 2, 4, 5, 17, 40};
  uint32_t seed = 1;
  for (DType dt : dtypes) {
    for (const auto& sh : shapes) {
      OwnedWeight w = MakeWeight(dt, sh[0], sh[1], seed++);
      for (int64_t T : token_counts) {
        const auto x = RandomVector(T * sh[1], seed++);
        std::vector<float> ref(static_cast<size_t>(T * sh[0])), fast(ref.size());
        SetLinearKernel(LinearKernel::kReference);
        Linear(x.data(), T, w.m, ref.data());
        for (const LinearKernel kernel : FastKernels()) {
          SetLinearKernel(kernel);
          Linear(x.data(), T, w.m, fast.data());
          ExpectClose(x, w.m, T, fast, ref,
                      std::string(LinearKernelName(kernel)) + " " + DTypeName(dt) + " " + std::to_string(sh[0]) +
                          "x" + std::to_string(sh[1]) + " T=" + std::to_string(T));
        }
      }
    }
  }
}

// A weight with no columns (an empty product) gives zeros on every kernel family, one token and
// several: the AVX2 GEMV's fetch distance divides by the row's bytes, and a zero there had to
// mean "nothing to fetch", not a division by zero.
TEST_F(LinearKernelTest, WeightWithoutColumnsGivesZeros) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    OwnedWeight w = MakeWeight(dt, 9, 0, 5);
    for (int64_t T : {1, 3}) {
      for (const LinearKernel kernel : {LinearKernel::kReference, LinearKernel::kAuto}) {
        SetLinearKernel(kernel);
        std::vector<float> y(static_cast<size_t>(T * 9), 7.0f);
        Linear(nullptr, T, w.m, y.data());
        for (float v : y) ASSERT_EQ(v, 0.0f) << DTypeName(dt) << " T=" << T << " " << LinearKernelName(kernel);
      }
    }
  }
}

TEST_F(LinearKernelTest, Avx2MatchesReferenceForIntegerFormats) {
  struct Case {
    bool int4;
    int64_t rows, cols, block;
    bool symmetric;
  };
  const Case cases[] = {{false, 37, 96, 32, true}, {false, 20, 200, 200, true},  // blocks; per channel
                        {true, 37, 96, 32, true},  {true, 19, 130, 32, false}};  // groups; zero points, odd tail
  uint32_t seed = 100;
  for (const Case& c : cases) {
    OwnedWeight w = MakeIntWeight(c.int4, c.rows, c.cols, seed++, c.block, c.symmetric);
    for (int64_t T : {1, 3, 7}) {
      const auto x = RandomVector(T * c.cols, seed++);
      std::vector<float> ref(static_cast<size_t>(T * c.rows)), fast(ref.size());
      SetLinearKernel(LinearKernel::kReference);
      Linear(x.data(), T, w.m, ref.data());
      SetLinearKernel(LinearKernel::kAvx2);
      Linear(x.data(), T, w.m, fast.data());
      ExpectClose(x, w.m, T, fast, ref,
                  std::string(c.int4 ? "int4" : "int8") + " " + std::to_string(c.rows) + "x" +
                      std::to_string(c.cols) + " T=" + std::to_string(T));
    }
  }
}

TEST_F(LinearKernelTest, RowsWithStrideAndAccumulateMatchReference) {
  OwnedWeight w = MakeWeight(DType::kBF16, 50, 64, 7);
  for (int64_t T : {1, 9}) {
    const auto x = RandomVector(T * 64, 8);
    const int64_t ldy = 70;
    std::vector<float> ref(static_cast<size_t>(T * ldy), 1.5f), fast = ref;
    SetLinearKernel(LinearKernel::kReference);
    LinearRows(x.data(), T, w.m, 3, 41, ref.data() + 2, ldy, true);
    SetLinearKernel(LinearKernel::kAvx2);
    LinearRows(x.data(), T, w.m, 3, 41, fast.data() + 2, ldy, true);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < ldy; ++j) {
        const float a = fast[t * ldy + j], b = ref[t * ldy + j];
        if (j < 5 || j >= 43) {
          EXPECT_EQ(a, 1.5f) << "wrote outside rows [3,41) at t=" << t << " j=" << j;
        } else {
          EXPECT_NEAR(a, b, 64 * 1.2e-7 * (std::fabs(b) + 64)) << "t=" << t << " j=" << j;
        }
      }
    }
  }
}

// A row's value must not depend on how rows were split between threads (the MoE splits them
// differently from Linear), so one thread and two give identical bits.
TEST_F(LinearKernelTest, ResultsDoNotDependOnThreadSplit) {
  for (const LinearKernel kernel : FastKernels()) {
  SetLinearKernel(kernel);
  std::vector<std::pair<std::string, OwnedWeight>> weights;
  weights.emplace_back("BF16", MakeWeight(DType::kBF16, 103, 96, 11));
  // FP8 in DeepSeek's 128-row blocks: many tokens go out in pieces of whole blocks.
  weights.emplace_back("F8_E4M3", MakeWeight(DType::kF8E4M3, 300, 96, 13, 128));
  // Pieces hold >= 64 KB of weights times tokens: one token splits only a larger matrix (these
  // 1,100 rows of 192 bytes go in four pieces, INT4's 3,000 in three).
  weights.emplace_back("BF16 1100 rows", MakeWeight(DType::kBF16, 1100, 96, 14));
  weights.emplace_back("int4 3000 rows", MakeIntWeight(true, 3000, 96, 15, 32, false));
  for (const auto& [name, w] : weights) {
    const int64_t rows = w.m.rows();
    for (int64_t T : {1, 3, 8, 21}) {
      const auto x = RandomVector(T * 96, 12);
      std::vector<float> one(static_cast<size_t>(T * rows)), two(one.size());
      SetNumThreads(1);
      Linear(x.data(), T, w.m, one.data());
      SetNumThreads(2);
      Linear(x.data(), T, w.m, two.data());
      SetNumThreads(0);
      EXPECT_EQ(one, two) << LinearKernelName(kernel) << " " << name << " T=" << T;
    }
  }
  EXPECT_EQ(MinPieceRows(weights[1].second.m, cpu::kGemvMaxTokens + 1), 128) << "the GEMM's panels";
  EXPECT_EQ(MinPieceRows(weights[1].second.m, cpu::kGemvMaxTokens), 1) << "the GEMV keeps small pieces";
  EXPECT_EQ(MinPieceRows(weights[0].second.m, 100), 1);
  }
}

// The MoE gives each expert a different token count, and a decode step of several sequences
// has one token each, so the GEMV (one token, or a few at once) and the GEMM (many) must agree
// to the bit: a token's logits may not depend on who else was routed or batched with it.
TEST_F(LinearKernelTest, ResultsDoNotDependOnTokenCount) {
  for (const LinearKernel kernel : FastKernels()) {
  SetLinearKernel(kernel);
  std::vector<std::pair<std::string, OwnedWeight>> weights;
  weights.emplace_back("F32", MakeWeight(DType::kF32, 29, 99, 20));
  weights.emplace_back("BF16", MakeWeight(DType::kBF16, 29, 99, 21));
  weights.emplace_back("F16", MakeWeight(DType::kF16, 29, 99, 25));
  weights.emplace_back("F8_E4M3", MakeWeight(DType::kF8E4M3, 29, 99, 21));
  weights.emplace_back("int8", MakeIntWeight(false, 29, 99, 23, 32, true));
  weights.emplace_back("int4", MakeIntWeight(true, 29, 99, 24, 16, false));
  for (const auto& [name, w] : weights) {
    // Both sides of each format's GEMV limit (GemvMaxTokens: 4, 8 or 48).
    for (int64_t T : {2, 3, 4, 5, 7, 8, 11, 47, 48, 49, 53}) {
      const auto x = RandomVector(T * 99, 22);
      std::vector<float> all(static_cast<size_t>(T * 29)), one(29);
      Linear(x.data(), T, w.m, all.data());
      for (int64_t t = 0; t < T; ++t) {
        Linear(x.data() + t * 99, 1, w.m, one.data());
        for (int64_t r = 0; r < 29; ++r)
          ASSERT_EQ(one[r], all[t * 29 + r])
              << LinearKernelName(kernel) << " " << name << " T=" << T << " token " << t << " row " << r;
      }
    }
  }
  }
}

// FP8's block scale multiplies the activations once per block of rows (GEMV tiles of eight rows,
// groups of up to 64 rows for 4-8 tokens, GEMM panels), so tiles that straddle two blocks and row
// ranges that start inside one take other paths. Blocks of 8 and 24 rows/columns (24: groups of
// 16-column steps plus an 8-column one), K with a tail, short (83) and over three of the 4-8
// token path's 512-column chunks (1163): every range and token count gives the bits of the whole
// matrix and of each token alone, and stays close to the reference.
TEST_F(LinearKernelTest, Fp8RowRangesAndTokenCountsAcrossScaleBlocks) {
  SetLinearKernel(LinearKernel::kAvx2);
  const int64_t rows = 45;
  for (const int64_t cols : {83, 1163}) {
    for (int64_t block : {8, 24}) {
      OwnedWeight w = MakeWeight(DType::kF8E4M3, rows, cols, 40 + static_cast<uint32_t>(block), block);
      for (int64_t T : {1, 4, 5, 7, 8, 11}) {
        const auto x = RandomVector(T * cols, 50 + static_cast<uint32_t>(T));
        std::vector<float> whole(static_cast<size_t>(T * rows)), ref(whole.size());
        Linear(x.data(), T, w.m, whole.data());
        SetLinearKernel(LinearKernel::kReference);
        Linear(x.data(), T, w.m, ref.data());
        SetLinearKernel(LinearKernel::kAvx2);
        const std::string what =
            "K " + std::to_string(cols) + " block " + std::to_string(block) + " T=" + std::to_string(T);
        ExpectClose(x, w.m, T, whole, ref, what);
        for (const auto& [r0, r1] : std::vector<std::pair<int64_t, int64_t>>{{3, 41}, {5, 13}, {7, 8}, {16, 45}}) {
          std::vector<float> part(static_cast<size_t>(T * rows), -7.0f);
          LinearRows(x.data(), T, w.m, r0, r1, part.data(), rows, false);
          for (int64_t t = 0; t < T; ++t)
            for (int64_t r = r0; r < r1; ++r)
              ASSERT_EQ(part[t * rows + r], whole[t * rows + r])
                  << what << " rows [" << r0 << "," << r1 << ") row " << r;
        }
        for (int64_t t = 0; t < T; ++t) {
          std::vector<float> one(static_cast<size_t>(rows));
          Linear(x.data() + t * cols, 1, w.m, one.data());
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(one[r], whole[t * rows + r]) << what << " token " << t << " row " << r;
        }
      }
    }
  }
}

// The fast kernels convert each stored weight in registers; against a unit vector e_k a row's
// output is that converted weight alone (every other product is +0), so GEMV (T=1) and GEMM
// (T=K) must reproduce DequantizeRows bit for bit, for every format and column.
TEST_F(LinearKernelTest, Avx2ConvertsEveryWeightExactlyAsDequantizeRows) {
  SetLinearKernel(LinearKernel::kAvx2);
  std::vector<std::pair<std::string, OwnedWeight>> weights;
  weights.emplace_back("BF16", MakeWeight(DType::kBF16, 13, 75, 31));
  weights.emplace_back("F16", MakeWeight(DType::kF16, 13, 75, 32));
  weights.emplace_back("F8_E4M3 32x32", MakeWeight(DType::kF8E4M3, 13, 75, 33, 32));
  weights.emplace_back("F8_E4M3 8x8", MakeWeight(DType::kF8E4M3, 13, 75, 34, 8));
  weights.emplace_back("int8 blocks", MakeIntWeight(false, 13, 75, 35, 24, true));
  weights.emplace_back("int8 per channel", MakeIntWeight(false, 13, 75, 36, 75, true));
  weights.emplace_back("int4 sym", MakeIntWeight(true, 13, 75, 37, 32, true));
  weights.emplace_back("int4 zero points", MakeIntWeight(true, 13, 75, 38, 8, false));
  for (const auto& [name, w] : weights) {
    const int64_t rows = w.m.rows(), K = w.m.cols();
    std::vector<float> expected(static_cast<size_t>(rows * K));
    DequantizeRows(w.m, 0, rows, expected.data());
    std::vector<float> eye(static_cast<size_t>(K * K), 0.0f), gemm(static_cast<size_t>(K * rows)), gemv(rows);
    for (int64_t k = 0; k < K; ++k) eye[k * K + k] = 1.0f;
    Linear(eye.data(), K, w.m, gemm.data());
    for (int64_t k = 0; k < K; ++k) {
      Linear(eye.data() + k * K, 1, w.m, gemv.data());
      for (int64_t r = 0; r < rows; ++r) {
        const float want = expected[r * K + k];
        ASSERT_EQ(gemv[r], want) << name << " GEMV row " << r << " column " << k;
        ASSERT_EQ(gemm[k * rows + r], want) << name << " GEMM row " << r << " column " << k;
      }
    }
  }
}

// With AVX-512 the GEMM's eight-row tiles hold two rows per vector and sum a tile's rows for two
// tokens at once. Against unit vectors every weight of the panel is DequantizeRows' value;
// against random activations each token gets the one-token GEMV's bits, at every token count
// (odd ones leave a token alone in the last sum; 53 and 70 at K = 2048 make two and three token
// blocks), through strides and accumulation, with rows past the last whole eight-row tile left
// to the AVX2 tiles. INT4 groups of whole 32-column steps (g32, g64, g96, with and without zero
// points; 24 groups a row at K 1536, two batches of the scales) take the converter's 32-column
// path, g8 its eight-column one. INT8 in 5-row scale
// blocks: a pair of rows may straddle two. Deep K (linear_kernels.h's kGemmDeepK: the tile's
// columns in parts, accumulators carried between them, 32-token blocks), with a K % 8 tail in
// the last part.
TEST_F(LinearKernelTest, Avx512PanelGivesDequantizeRowsAndTheGemvBits) {
  if (!GetCpuFeatures().HasAvx512VnniSet()) GTEST_SKIP() << "no AVX-512 (" << GetCpuFeatures().ToString() << ")";
  SetLinearKernel(LinearKernel::kAvx512);
  const int64_t kRows = 45, cols = 96;
  std::vector<std::pair<std::string, OwnedWeight>> weights;
  weights.emplace_back("BF16", MakeWeight(DType::kBF16, kRows, cols, 71));
  weights.emplace_back("F8_E4M3 8x8", MakeWeight(DType::kF8E4M3, kRows, cols, 72, 8));
  weights.emplace_back("F8_E4M3 128x128", MakeWeight(DType::kF8E4M3, kRows, cols, 73, 128));
  weights.emplace_back("int8 5x24 blocks", MakeIntWeight(false, kRows, cols, 74, 24, true, 5));
  weights.emplace_back("int8 per channel", MakeIntWeight(false, kRows, cols, 75, cols, true));
  weights.emplace_back("int4 g8 zero points", MakeIntWeight(true, kRows, cols, 76, 8, false));
  weights.emplace_back("int4 g32", MakeIntWeight(true, kRows, cols, 77, 32, true));
  weights.emplace_back("int4 g32 zero points", MakeIntWeight(true, kRows, cols, 83, 32, false));
  weights.emplace_back("int4 g96 zero points", MakeIntWeight(true, kRows, cols, 84, 96, false));
  weights.emplace_back("int4 g64, K 2048", MakeIntWeight(true, kRows, 2048, 78, 64, true));
  weights.emplace_back("int4 g64 zero points, K 1536", MakeIntWeight(true, kRows, 1536, 85, 64, false));
  weights.emplace_back("BF16, K 4100", MakeWeight(DType::kBF16, kRows, 4100, 79));
  // BF16 rows of whole 8-column steps go to GemmBf16Rows8Avx512 straight from the weight: at
  // K 2048 in two token blocks at T = 70, at K 4096 deep; at T = 100 (past
  // kBf16RowsMaxTokens) through the panel again.
  weights.emplace_back("BF16, K 2048", MakeWeight(DType::kBF16, kRows, 2048, 86));
  weights.emplace_back("BF16, K 4096", MakeWeight(DType::kBF16, kRows, 4096, 87));
  weights.emplace_back("F8_E4M3 128x128, K 4224", MakeWeight(DType::kF8E4M3, kRows, 4224, 80, 128));
  weights.emplace_back("int8 per channel, K 4096", MakeIntWeight(false, kRows, 4096, 81, 4096, true));
  // Deep FP8 panels are 64 rows: two in the first 128-row scale block, a third in the next.
  weights.emplace_back("F8_E4M3 128x128, 150 rows, K 2056", MakeWeight(DType::kF8E4M3, 150, 2056, 82, 128));
  for (const auto& [name, w] : weights) {
    const int64_t rows = w.m.rows(), K = w.m.cols();
    if (K == cols) {  // unit vectors: one token per column
      std::vector<float> expected(static_cast<size_t>(rows * K));
      DequantizeRows(w.m, 0, rows, expected.data());
      std::vector<float> eye(static_cast<size_t>(K * K), 0.0f), gemm(static_cast<size_t>(K * rows));
      for (int64_t k = 0; k < K; ++k) eye[k * K + k] = 1.0f;
      Linear(eye.data(), K, w.m, gemm.data());
      for (int64_t k = 0; k < K; ++k)
        for (int64_t r = 0; r < rows; ++r)
          ASSERT_EQ(gemm[k * rows + r], expected[r * K + k]) << name << " row " << r << " column " << k;
    }
    for (int64_t T : {4, 5, 8, 9, 10, 11, 13, 48, 53, 70, 100}) {  // BF16's GEMM from 4 tokens
      const auto x = RandomVector(T * K, 80 + static_cast<uint32_t>(T));
      std::vector<float> all(static_cast<size_t>(T * rows)), one(static_cast<size_t>(rows));
      Linear(x.data(), T, w.m, all.data());
      const int64_t ldy = rows + 6;
      std::vector<float> added(static_cast<size_t>(T * ldy), 0.25f);
      LinearRows(x.data(), T, w.m, 0, rows, added.data() + 3, ldy, true);
      for (int64_t t = 0; t < T; ++t) {
        Linear(x.data() + t * K, 1, w.m, one.data());
        for (int64_t r = 0; r < rows; ++r) {
          ASSERT_EQ(all[t * rows + r], one[r]) << name << " T=" << T << " token " << t << " row " << r;
          ASSERT_EQ(added[t * ldy + 3 + r], 0.25f + one[r]) << name << " accumulated, T=" << T << " token " << t << " row " << r;
        }
        for (int64_t j : {int64_t{0}, int64_t{1}, int64_t{2}, ldy - 3, ldy - 2, ldy - 1}) ASSERT_EQ(added[t * ldy + j], 0.25f) << name << " wrote outside its rows";
      }
    }
  }
}

// FP8 decode reads each e4m3 byte as a float32 2^120 times too small (subnormal for e4m3's
// subnormals) against activations scaled up to match, and redoes a tile whose scaled
// activations overflowed (|x · scale| >= 256) the way the GEMM computes it. Every byte value
// converts exactly (unit vectors), and activations far past that limit give the GEMM's bits.
TEST_F(LinearKernelTest, Fp8DecodeTakesEveryByteAndLargeActivations) {
  std::vector<LinearKernel> kernels = {LinearKernel::kAvx2};
  if (GetCpuFeatures().HasAvx512VnniSet()) kernels.push_back(LinearKernel::kAvx512);  // its own decode GEMV
  for (const LinearKernel kernel : kernels) {
  SetLinearKernel(kernel);
  const int64_t rows = 16, K = 264;  // K % 16 == 8: a group's last eight columns alone
  OwnedWeight w = MakeWeight(DType::kF8E4M3, rows, K, 60, 128);
  for (int64_t i = 0; i < rows * K; ++i) {
    const auto byte = static_cast<uint8_t>((i * 7 + i / K) % 256);
    w.bytes[static_cast<size_t>(i)] = (byte & 0x7f) == 0x7f ? 0 : byte;  // 0x7f / 0xff are NaN
  }
  std::vector<float> expected(static_cast<size_t>(rows * K)), gemv(rows);
  DequantizeRows(w.m, 0, rows, expected.data());
  int subnormals = 0;
  for (int64_t k = 0; k < K; ++k) {
    std::vector<float> e(static_cast<size_t>(K), 0.0f);
    e[k] = 1.0f;
    Linear(e.data(), 1, w.m, gemv.data());
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_EQ(gemv[r], expected[r * K + k]) << "row " << r << " column " << k;
      const uint8_t b = w.bytes[static_cast<size_t>(r * K + k)];
      subnormals += (b & 0x78) == 0 && (b & 0x07) != 0;
    }
  }
  EXPECT_GT(subnormals, 100) << "the bytes cover e4m3's subnormals";
  // Several tokens at once (the GEMV's multi-token tiles, the GEMM), the large activations on
  // every other token only: a tile redoes just the tokens that overflowed.
  for (float magnitude : {1.0f, 1e5f, 1e30f}) {
    for (int64_t T : {3, 5, 11}) {
      std::vector<float> x = RandomVector(T * K, 61);
      for (int64_t i = 0; i < T * K; ++i) x[static_cast<size_t>(i)] *= (i / K) % 2 == 1 ? magnitude : 1.0f;
      std::vector<float> all(static_cast<size_t>(T * rows)), one(rows);
      Linear(x.data(), T, w.m, all.data());
      for (int64_t t = 0; t < T; ++t) {
        Linear(x.data() + t * K, 1, w.m, one.data());
        for (int64_t r = 0; r < rows; ++r) {
          ASSERT_EQ(one[r], all[t * rows + r]) << "|x| ~ " << magnitude << " T=" << T << " token " << t << " row " << r;
          if (magnitude < 1e30f) ASSERT_TRUE(std::isfinite(one[r])) << "|x| ~ " << magnitude;
        }
      }
    }
  }
  }
}

// With AVX-512, the FP8 decode GEMV (and BF16's with several tokens) holds two rows per
// vector, each lane on AVX2's chain, and converts each weight once for up to three tokens: the
// same bits as kAvx2 for one token and for several (passes of three, two and one), tiles whole
// and cut (rows past a block of rows, the last rows), K with a group's (or the row's) last
// eight columns alone or a K % 8 tail (left to AVX2), activations whose scaled form overflows
// on one token (FP8: its pass redone), NaN, strides, accumulation and both thread counts.
TEST_F(LinearKernelTest, Avx512DecodeTilesGiveAvx2Bits) {
  if (!GetCpuFeatures().HasAvx512VnniSet()) GTEST_SKIP() << "no AVX-512 (" << GetCpuFeatures().ToString() << ")";
  uint32_t seed = 90;
  for (const auto& [dtype, block] : std::vector<std::pair<DType, int64_t>>{
           {DType::kF8E4M3, 8}, {DType::kF8E4M3, 24}, {DType::kF8E4M3, 128}, {DType::kBF16, 128}}) {
    for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{300, 1536}, {37, 264}, {16, 136}, {9, 83}}) {
      OwnedWeight w = MakeWeight(dtype, rows, cols, seed++, block);
      for (float magnitude : {1.0f, 1e5f, 1e30f, std::numeric_limits<float>::quiet_NaN()}) {
        for (int64_t T : {1, 2, 5, 8}) {
          std::vector<float> x = RandomVector(T * cols, seed++);
          x[static_cast<size_t>(T / 2 * cols + cols / 2)] *= magnitude;  // one large (or NaN) activation
          for (int threads : {1, 2}) {
            SetNumThreads(threads);
            const int64_t ldy = rows + 3, r0 = 3, r1 = rows - 2;
            std::vector<float> y2(static_cast<size_t>(T * rows)), y5(y2.size());
            std::vector<float> rows2(static_cast<size_t>(T * ldy), 0.5f), rows5 = rows2;
            SetLinearKernel(LinearKernel::kAvx2);
            Linear(x.data(), T, w.m, y2.data());
            LinearRows(x.data(), T, w.m, r0, r1, rows2.data(), ldy, true);
            SetLinearKernel(LinearKernel::kAvx512);
            Linear(x.data(), T, w.m, y5.data());
            LinearRows(x.data(), T, w.m, r0, r1, rows5.data(), ldy, true);
            const std::string what = std::string(DTypeName(dtype)) + " block " + std::to_string(block) + " " +
                                     std::to_string(rows) + "x" + std::to_string(cols) + " T=" + std::to_string(T) +
                                     " |x| ~ " + std::to_string(magnitude);
            ASSERT_EQ(std::memcmp(y2.data(), y5.data(), y2.size() * sizeof(float)), 0) << what;
            ASSERT_EQ(std::memcmp(rows2.data(), rows5.data(), rows2.size() * sizeof(float)), 0) << what << " rows";
            if (magnitude == 1.0f)
              for (float v : y5) ASSERT_TRUE(std::isfinite(v)) << what;
          }
        }
      }
    }
  }
}

// FP8's decode GEMV with VBMI (DecodeTileFp8Bytes: byte permutes, 32-column steps, sixteen
// rows a tile for one token, eight for several) and without (DecodeTile) gives GemvAvx2's bits:
// groups of 32, 64 and 128 columns (the permute's form), and K % 32 != 0 (the other form);
// tiles of sixteen and eight rows, cut by r1 and by a block of rows; one token and passes of
// three, two and one; an activation whose scaled form overflows, or NaN (the tile redone);
// accumulation into strided rows. Called directly, so both forms run on a CPU that has VBMI.
TEST_F(LinearKernelTest, Fp8DecodeWithBytePermutesGivesAvx2Bits) {
  if (!GetCpuFeatures().HasAvx512VnniSet() || !GetCpuFeatures().avx512_vbmi)
    GTEST_SKIP() << "no AVX-512 VBMI (" << GetCpuFeatures().ToString() << ")";
  uint32_t seed = 140;
  struct Shape {
    int64_t rows, cols, block;
  };
  for (const Shape& shape : {Shape{300, 1536, 128}, Shape{1536, 512, 128}, Shape{70, 256, 32}, Shape{45, 192, 64},
                             Shape{40, 136, 128}}) {
    OwnedWeight w = MakeWeight(DType::kF8E4M3, shape.rows, shape.cols, seed++, shape.block);
    const cpu::RawWeight raw = Fp8Raw(w.m);
    const int64_t K = shape.cols;
    for (float magnitude : {1.0f, 1e30f, std::numeric_limits<float>::quiet_NaN()}) {
      for (int64_t T : {1, 2, 3, 5}) {
        std::vector<float> x = RandomVector(T * K, seed++);
        if (magnitude != 1.0f) x[static_cast<size_t>((T - 1) * K + K / 3)] *= magnitude;
        for (const auto& [r0, r1] : std::vector<std::pair<int64_t, int64_t>>{{0, shape.rows}, {3, shape.rows - 2}}) {
          const int64_t ldy = shape.rows + 5;
          std::vector<float> avx2(static_cast<size_t>(T * ldy), 0.25f), tiles = avx2, bytes = avx2;
          cpu::GemvAvx2(x.data(), T, K, raw, r0, r1, avx2.data(), ldy, true);
          cpu::GemvAvx512(x.data(), T, K, raw, r0, r1, tiles.data(), ldy, true, false);
          cpu::GemvAvx512(x.data(), T, K, raw, r0, r1, bytes.data(), ldy, true, true);
          const std::string what = std::to_string(shape.rows) + "x" + std::to_string(K) + " block " +
                                   std::to_string(shape.block) + " T=" + std::to_string(T) + " rows [" +
                                   std::to_string(r0) + ", " + std::to_string(r1) + ") |x| ~ " + std::to_string(magnitude);
          ASSERT_EQ(std::memcmp(avx2.data(), tiles.data(), avx2.size() * sizeof(float)), 0) << what << " (DecodeTile)";
          ASSERT_EQ(std::memcmp(avx2.data(), bytes.data(), avx2.size() * sizeof(float)), 0) << what << " (byte permutes)";
          if (magnitude == 1.0f)
            for (float v : bytes) ASSERT_TRUE(std::isfinite(v)) << what;
        }
      }
    }
  }
}

// LinearSameInput runs several matrices of one input in one region, sharing x's int8 form
// between matrices that take the same layout (INT8's column order differs from INT4's nibble
// order): every output must be Linear's, bit for bit, whatever the kernels, activations,
// token count (GEMV or GEMM) and thread count, and each matrix is counted once.
TEST_F(LinearKernelTest, SameInputGivesEachLinearBitForBit) {
  const int64_t K = 96;
  std::vector<std::pair<std::string, OwnedWeight>> w;
  w.emplace_back("BF16", MakeWeight(DType::kBF16, 70, K, 31));
  w.emplace_back("int4", MakeIntWeight(true, 45, K, 32, 32, false));
  w.emplace_back("int4 symmetric", MakeIntWeight(true, 37, K, 33, 32, true));
  w.emplace_back("int8", MakeIntWeight(false, 33, K, 34, 32, true));
  w.emplace_back("F8_E4M3", MakeWeight(DType::kF8E4M3, 130, K, 35, 128));
  const std::vector<std::vector<int>> sets = {{0, 1}, {1, 2}, {3, 1}, {4, 0}, {3, 2, 4}};
  std::vector<LinearKernel> kernels = FastKernels();  // avx512: its int8 GEMM from 3 tokens
  kernels.push_back(LinearKernel::kReference);
  for (const LinearKernel kernel : kernels)
    for (const LinearActivations acts : {LinearActivations::kF32, LinearActivations::kInt8All})
      for (const int threads : {1, 2})
        for (const int64_t T : {1, 3, 21})
          for (const auto& set : sets) {
            SetLinearKernel(kernel);
            SetLinearActivations(acts);
            SetNumThreads(threads);
            const auto x = RandomVector(T * K, 36 + static_cast<uint32_t>(T));
            std::vector<std::vector<float>> alone, together;
            for (int i : set) {
              const WeightMatrix& m = w[static_cast<size_t>(i)].second.m;
              alone.emplace_back(static_cast<size_t>(T * m.rows()));
              together.emplace_back(static_cast<size_t>(T * m.rows()), -1.0f);
              Linear(x.data(), T, m, alone.back().data());
            }
            const auto out = [&](size_t j) {
              return LinearOutput{&w[static_cast<size_t>(set[j])].second.m, together[j].data()};
            };
            LinearCounters counters;
            SetLinearCounters(&counters);
            if (set.size() == 2) {
              LinearSameInput(x.data(), T, {out(0), out(1)});
            } else {
              LinearSameInput(x.data(), T, {out(0), out(1), out(2)});
            }
            SetLinearCounters(nullptr);
            uint64_t bytes = 0;
            for (size_t j = 0; j < set.size(); ++j) {
              const WeightMatrix& m = w[static_cast<size_t>(set[j])].second.m;
              for (const TensorView* t : {&m.w, &m.scale_inv, &m.scale, &m.zero})
                if (!t->empty()) bytes += t->nbytes();
              EXPECT_EQ(alone[j], together[j]) << w[static_cast<size_t>(set[j])].first << " (output " << j
                                               << ") kernel " << LinearKernelName(kernel) << " activations "
                                               << LinearActivationsName(acts) << " threads " << threads << " T=" << T;
            }
            EXPECT_EQ(counters.Read().calls, set.size());
            EXPECT_EQ(counters.Read().weight_bytes, bytes);
          }
  SetNumThreads(0);
}

// LinearJobs (the MoE's experts in one region) takes inputs prepared elsewhere, one of them for
// another matrix's int8 layout (an INT8-prepared x against INT4 weights: quantized again for
// those), jobs with no tokens, and a piece size of its own: every y is Linear's, bit for bit,
// and every matrix's bytes are counted once.
TEST_F(LinearKernelTest, JobsGiveEachLinearBitForBit) {
  const int64_t K = 96;
  OwnedWeight bf16 = MakeWeight(DType::kBF16, 150, K, 41);
  OwnedWeight int4 = MakeIntWeight(true, 77, K, 42, 32, false);
  OwnedWeight int8 = MakeIntWeight(false, 65, K, 43, 32, true);
  // avx512: the int8 GEMM (INT8 from 3 tokens, INT4 from 8) and its scratch, also where an
  // input is prepared again for another layout.
  for (const LinearKernel kernel : FastKernels())
  for (const LinearActivations acts : {LinearActivations::kF32, LinearActivations::kInt8All})
    for (const int threads : {1, 2})
      for (const int64_t min_rows : {1, 64})
        for (const int64_t T : {1, 5, 21}) {
          SetLinearKernel(kernel);
          SetLinearActivations(acts);
          SetNumThreads(threads);
          const auto x = RandomVector(T * K, 44 + static_cast<uint32_t>(T));
          LinearInput for_int8, for_bf16, empty;
          for_int8.Prepare(x.data(), T, int8.m);
          for_bf16.Prepare(x.data(), T, bf16.m);
          empty.Prepare(x.data(), 0, bf16.m);
          std::vector<float> a8(static_cast<size_t>(T * 65)), a4(static_cast<size_t>(T * 77)),
              a16(static_cast<size_t>(T * 150));
          std::vector<float> b8(a8.size(), -1.0f), b4(a4.size(), -1.0f), b16(a16.size(), -1.0f), none(1, -1.0f);
          Linear(x.data(), T, int8.m, a8.data());
          Linear(x.data(), T, int4.m, a4.data());
          Linear(x.data(), T, bf16.m, a16.data());
          LinearCounters counters;
          SetLinearCounters(&counters);
          LinearJobs({{&for_int8, &int8.m, b8.data()},
                      {&for_int8, &int4.m, b4.data()},
                      {&empty, &bf16.m, none.data()},
                      {&for_bf16, &bf16.m, b16.data()}},
                     min_rows);
          SetLinearCounters(nullptr);
          const std::string what = std::string(LinearKernelName(kernel)) + " activations " + LinearActivationsName(acts) + " threads " +
                                   std::to_string(threads) + " min rows " + std::to_string(min_rows) +
                                   " T=" + std::to_string(T);
          EXPECT_EQ(a8, b8) << "int8 " << what;
          EXPECT_EQ(a4, b4) << "int4 from an input prepared for int8, " << what;
          EXPECT_EQ(a16, b16) << "bf16 " << what;
          EXPECT_EQ(none[0], -1.0f) << "a job with no tokens writes nothing";
          uint64_t bytes = 0;
          for (const WeightMatrix* m : {&int8.m, &int4.m, &bf16.m})
            for (const TensorView* t : {&m->w, &m->scale_inv, &m->scale, &m->zero})
              if (!t->empty()) bytes += t->nbytes();
          EXPECT_EQ(counters.Read().weight_bytes, bytes) << what;
        }
  SetNumThreads(0);
}

TEST(LinearCountersTest, CountsWeightBytesAndFlops) {
  OwnedWeight w = MakeWeight(DType::kBF16, 40, 32, 3);
  const auto x = RandomVector(3 * 32, 4);
  std::vector<float> y(3 * 40);
  LinearCounters counters;
  SetLinearCounters(&counters);
  Linear(x.data(), 3, w.m, y.data());
  LinearRows(x.data(), 3, w.m, 0, 10, y.data(), 40, false);
  SetLinearCounters(nullptr);
  const LinearCounters::Totals t = counters.Read();
  EXPECT_EQ(t.weight_bytes, uint64_t{40 * 32 * 2 + 10 * 32 * 2});
  EXPECT_EQ(t.flops, uint64_t{2 * 3 * 32 * 50});
  EXPECT_EQ(t.calls, 2u);
  EXPECT_EQ(t.int8_flops, 0u) << "BF16 weights take float32 activations";
  counters.Reset();
  EXPECT_EQ(counters.Read().calls, 0u);
}

// Products with int8 activations (INT8/INT4 weights, not forced to float32) are tallied apart
// as well (`dsv3 bench` reports their share of the FLOPs).
TEST(LinearCountersTest, CountsInt8ActivationFlopsApart) {
  OwnedWeight w = testing::MakeIntWeight(true, 40, 64, 5, 32, false);
  const auto x = RandomVector(3 * 64, 6);
  std::vector<float> y(3 * 40), y2(3 * 40);
  LinearCounters counters;
  SetLinearCounters(&counters);
  for (const auto acts : {LinearActivations::kInt8All, LinearActivations::kF32}) {
    SetLinearActivations(acts);
    counters.Reset();
    Linear(x.data(), 3, w.m, y.data());
    LinearRows(x.data(), 3, w.m, 0, 10, y.data(), 40, false);
    LinearSameInput(x.data(), 3, {{&w.m, y.data()}, {&w.m, y2.data()}});
    const LinearCounters::Totals t = counters.Read();
    EXPECT_EQ(t.flops, uint64_t{2 * 3 * 64 * (40 + 10 + 80)});
    EXPECT_EQ(t.int8_flops, acts == LinearActivations::kF32 ? 0 : t.flops) << LinearActivationsName(acts);
  }
  SetLinearCounters(nullptr);
  SetLinearActivations(LinearActivations::kInt8);
}

// Calls from many threads at once (the MoE's row jobs) are all counted, whichever slots they
// land in: more threads than slots share some.
TEST(LinearCountersTest, CountsCallsFromEveryThread) {
  OwnedWeight w = MakeWeight(DType::kBF16, 40, 32, 3);
  const auto x = RandomVector(3 * 32, 4);
  LinearCounters counters;
  SetLinearCounters(&counters);
  const int kThreads = LinearCounters::kSlots + 4, kCalls = 50;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&] {
      std::vector<float> y(3 * 40);
      for (int k = 0; k < kCalls; ++k) LinearRows(x.data(), 3, w.m, 0, 10, y.data(), 40, false);
    });
  for (auto& t : threads) t.join();
  SetLinearCounters(nullptr);
  const LinearCounters::Totals t = counters.Read();
  EXPECT_EQ(t.calls, uint64_t{kThreads * kCalls});
  EXPECT_EQ(t.weight_bytes, uint64_t{kThreads * kCalls * 10 * 32 * 2});
  EXPECT_EQ(t.flops, uint64_t{kThreads * kCalls * 2 * 3 * 32 * 10});
}

TEST(CpuFeaturesTest, DescribesTheCpu) {
  const CpuFeatures& f = GetCpuFeatures();
  EXPECT_FALSE(f.ToString().empty());
  // AVX-512 subsets imply the foundation; the OS check must not report them alone.
  if (f.avx512bw || f.avx512_bf16 || f.avx512_vbmi) EXPECT_TRUE(f.avx512f);
  if (f.avx512_vbmi) EXPECT_NE(f.ToString().find("avx512_vbmi"), std::string::npos);
}

}  // namespace
}  // namespace dsv3
