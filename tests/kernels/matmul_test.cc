// MatMul (prefill attention's row-major products over a packed right operand) against its
// reference twin: row counts around the AVX2 tile (6 rows) and row block (72), inner dimensions
// around its k block (256, and 0), column counts around its strip (16), B given either way,
// strides wider than the rows, and the first rows / columns of a larger B. Then what the
// attention relies on: a product's bits do not depend on how many rows or columns a call asks
// for; the AVX-512 tile gives the AVX2 tile's. Skips where the CPU lacks AVX2.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/ops.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed) { return testing::RandomNormal(n, 1.0f, seed); }

class MatMulTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GetCpuFeatures().HasAvx2Set()) GTEST_SKIP() << "CPU lacks AVX2+FMA+F16C";
  }
  void TearDown() override { SetLinearKernel(LinearKernel::kAuto); }
};

// B[k, n] of a [K, N] matrix stored as itself (row stride ld) or transposed (row stride ld).
float At(const std::vector<float>& b, bool transposed, int64_t ld, int64_t k, int64_t n) {
  return transposed ? b[n * ld + k] : b[k * ld + n];
}

TEST_F(MatMulTest, PackedStripsHoldBEitherWayWithZerosPastN) {
  const int64_t K = 7, N = 37, ld = 41;
  const auto b = Random(K * ld, 1), bt = Random(N * ld, 2);
  for (bool transposed : {false, true}) {
    const auto& src = transposed ? bt : b;
    MatMulRhs p;
    PackMatMulRhs(src.data(), K, N, ld, transposed, &p);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p.strips()) % 64, 0u);
    for (int64_t n = 0; n < 48; ++n) {  // three strips, the last with 11 padding columns
      for (int64_t k = 0; k < K; ++k) {
        const float got = p.strips()[(n / 16) * K * 16 + k * 16 + n % 16];
        ASSERT_EQ(got, n < N ? At(src, transposed, ld, k, n) : 0.0f) << "k=" << k << " n=" << n;
      }
    }
  }
}

// Packed in blocks whose edges fall inside strips, in any order, over an operand that held
// other values before: the strips and their zero padding come out as packed whole.
TEST_F(MatMulTest, PackingInBlocksGivesTheWholePacking) {
  const int64_t K = 11, N = 45, ld = 50;
  for (bool transposed : {false, true}) {
    const auto b = Random((transposed ? N : K) * ld, transposed ? 3 : 4);
    MatMulRhs whole, pieces;
    PackMatMulRhs(b.data(), K, N, ld, transposed, &whole);
    PackMatMulRhs(Random(40 * 40, 5).data(), 40, 40, 40, false, &pieces);  // stale contents
    SizeMatMulRhs(K, N, &pieces);
    const auto at = [&](int64_t k, int64_t n) { return b.data() + (transposed ? n * ld + k : k * ld + n); };
    for (const auto& [k0, k1, n0, n1] : std::vector<std::array<int64_t, 4>>{
             {0, 4, 20, 45}, {4, 11, 20, 45}, {0, 11, 7, 20}, {0, 11, 0, 7}}) {
      PackMatMulRhsBlock(at(k0, n0), ld, transposed, k0, k1, n0, n1, &pieces);
    }
    ASSERT_EQ(pieces.K, K);
    ASSERT_EQ(pieces.N, N);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(pieces.strips()) % 64, 0u);
    EXPECT_EQ(std::memcmp(pieces.strips(), whole.strips(), 3 * K * 16 * sizeof(float)), 0)
        << (transposed ? "transposed" : "as is");
  }
}

TEST_F(MatMulTest, MatchesTheReference) {
  uint32_t seed = 10;
  for (int64_t M : {1, 2, 5, 6, 7, 13, 80}) {
    for (int64_t K : {0, 1, 9, 96, 300}) {
      for (int64_t N : {1, 15, 16, 17, 40}) {
        for (bool transposed : {false, true}) {
          // B holds more rows and columns than the call uses; a and c have wider strides.
          const int64_t bK = K + 3, bN = N + 5, ldb = (transposed ? bK : bN) + 2, lda = K + 4, ldc = N + 3;
          const auto b = Random((transposed ? bN : bK) * ldb, seed++), a = Random(M * lda, seed++);
          const auto init = Random(M * ldc, seed++);
          MatMulRhs packed;
          PackMatMulRhs(b.data(), bK, bN, ldb, transposed, &packed);
          std::vector<float> ref = init, fast = init;
          SetLinearKernel(LinearKernel::kReference);
          MatMul(a.data(), M, K, lda, packed, N, ref.data(), ldc);
          SetLinearKernel(LinearKernel::kAvx2);
          MatMul(a.data(), M, K, lda, packed, N, fast.data(), ldc);
          const std::string what = "M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(N) +
                                   (transposed ? " transposed" : "");
          for (int64_t m = 0; m < M; ++m) {
            for (int64_t n = 0; n < ldc; ++n) {
              const size_t i = static_cast<size_t>(m * ldc + n);
              if (n >= N) {
                ASSERT_EQ(fast[i], init[i]) << what << ": wrote past N at m=" << m;
                ASSERT_EQ(ref[i], init[i]) << what << ": reference wrote past N at m=" << m;
                continue;
              }
              double exact = 0.0, magnitude = 0.0;
              for (int64_t k = 0; k < K; ++k) {
                const double p = double(a[m * lda + k]) * At(b, transposed, ldb, k, n);
                exact += p;
                magnitude += std::fabs(p);
              }
              // float32 sums of K products in some order: within K * eps * Σ|products|.
              const double tol = double(K) * std::numeric_limits<float>::epsilon() * magnitude + 1e-30;
              ASSERT_LE(std::fabs(fast[i] - exact), tol) << what << " m=" << m << " n=" << n;
              ASSERT_LE(std::fabs(ref[i] - exact), tol) << what << " (reference) m=" << m << " n=" << n;
            }
          }
        }
      }
    }
  }
}

// With AVX-512 the tile takes two strips per row (512-bit vectors): the AVX2 tile's bits for row
// counts around its 6 and 72, inner dimensions around its k block, column counts around one
// and two strips (the last pair may be a lone strip, either may be cut), strides and a larger B.
TEST_F(MatMulTest, Avx512GivesTheAvx2Bits) {
  if (!GetCpuFeatures().HasAvx512VnniSet()) GTEST_SKIP() << "no AVX-512 (" << GetCpuFeatures().ToString() << ")";
  uint32_t seed = 500;
  for (int64_t M : {1, 5, 6, 7, 13, 80}) {
    for (int64_t K : {0, 1, 9, 96, 300, 520}) {
      for (int64_t N : {1, 15, 16, 17, 31, 32, 33, 40, 70}) {
        const int64_t bK = K + 3, bN = N + 5, lda = K + 4, ldc = N + 3;
        const auto b = Random(bK * bN, seed++), a = Random(M * lda, seed++), init = Random(M * ldc, seed++);
        MatMulRhs packed;
        PackMatMulRhs(b.data(), bK, bN, bN, false, &packed);
        std::vector<float> avx2 = init, avx512 = init;
        SetLinearKernel(LinearKernel::kAvx2);
        MatMul(a.data(), M, K, lda, packed, N, avx2.data(), ldc);
        SetLinearKernel(LinearKernel::kAvx512);
        MatMul(a.data(), M, K, lda, packed, N, avx512.data(), ldc);
        ASSERT_EQ(std::memcmp(avx2.data(), avx512.data(), avx2.size() * sizeof(float)), 0)
            << "M=" << M << " K=" << K << " N=" << N;
      }
    }
  }
}

// Prefill attention multiplies blocks of query rows against the columns their last query sees:
// every element must come out as it would from one product over all rows and columns.
TEST_F(MatMulTest, BitsDoNotDependOnTheRowsOrColumnsAsked) {
  std::vector<LinearKernel> kernels = {LinearKernel::kAvx2};
  if (GetCpuFeatures().HasAvx512VnniSet()) kernels.push_back(LinearKernel::kAvx512);
  for (const LinearKernel kernel : kernels) {
  SetLinearKernel(kernel);
  const int64_t M = 50, K = 300, N = 70;
  const auto a = Random(M * K, 1), b = Random(K * N, 2);
  MatMulRhs packed;
  PackMatMulRhs(b.data(), K, N, N, false, &packed);
  std::vector<float> whole(static_cast<size_t>(M * N));
  MatMul(a.data(), M, K, K, packed, N, whole.data(), N);
  for (int64_t m0 : {0, 1, 7, 49}) {
    for (int64_t rows : {1, 5, 6, 13}) {
      for (int64_t cols : {1, 16, 33, 70}) {
        if (m0 + rows > M) continue;
        std::vector<float> part(static_cast<size_t>(rows * cols));
        MatMul(a.data() + m0 * K, rows, K, K, packed, cols, part.data(), cols);
        for (int64_t m = 0; m < rows; ++m)
          ASSERT_EQ(std::memcmp(part.data() + m * cols, whole.data() + (m0 + m) * N, cols * sizeof(float)), 0)
              << LinearKernelName(kernel) << " rows " << m0 << "+" << rows << ", " << cols << " columns: row " << m;
      }
    }
  }
  }
}

}  // namespace
}  // namespace dsv3
