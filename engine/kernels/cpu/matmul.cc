// MatMul (ops.h): B packed in strips of 16 columns, then the AVX2 kernel (or its AVX-512 form,
// the same bits) when the CPU has it and the Linear kernel family is not forced to the
// reference, else the reference twin below (Eigen over the same strips; the tests compare them).
#include <Eigen/Core>

#include <algorithm>
#include <cstdint>

#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"

namespace dsv3 {

void SizeMatMulRhs(int64_t K, int64_t N, MatMulRhs* out) {
  constexpr int64_t W = MatMulRhs::kStrip;
  const int64_t strips = (N + W - 1) / W;
  out->K = K;
  out->N = N;
  out->storage.Resize(static_cast<size_t>(strips * K * W));
  if (N % W != 0) {  // the last strip's columns past N
    float* last = out->storage.data() + (strips - 1) * K * W;
    for (int64_t k = 0; k < K; ++k) std::fill(last + k * W + N % W, last + (k + 1) * W, 0.0f);
  }
}

void PackMatMulRhsBlock(const float* b, int64_t ldb, bool transposed, int64_t k0, int64_t k1, int64_t n0, int64_t n1,
                        MatMulRhs* out) {
  constexpr int64_t W = MatMulRhs::kStrip;
  float* const base = out->storage.data();
  for (int64_t j = n0 / W; j * W < n1; ++j) {
    float* strip = base + j * out->K * W;
    const int64_t lo = std::max(n0, j * W), hi = std::min(n1, (j + 1) * W);
    if (transposed) {  // column n of B is row n - n0 of b: walk the strip's rows side by side
      for (int64_t n = lo; n < hi; ++n) {
        const float* row = b + (n - n0) * ldb;
        for (int64_t k = k0; k < k1; ++k) strip[k * W + n % W] = row[k - k0];
      }
    } else {
      for (int64_t k = k0; k < k1; ++k) {
        const float* row = b + (k - k0) * ldb;
        std::copy(row + (lo - n0), row + (hi - n0), strip + k * W + lo % W);
      }
    }
  }
}

void PackMatMulRhs(const float* b, int64_t K, int64_t N, int64_t ldb, bool transposed, MatMulRhs* out) {
  SizeMatMulRhs(K, N, out);
  PackMatMulRhsBlock(b, ldb, transposed, 0, K, 0, N, out);
}

void MatMul(const float* a, int64_t M, int64_t K, int64_t lda, const MatMulRhs& b, int64_t N, float* c, int64_t ldc) {
  constexpr int64_t W = MatMulRhs::kStrip;
  if (M <= 0 || N <= 0) return;
  const LinearKernel kernel = ActiveLinearKernel();
  if (kernel == LinearKernel::kAvx512) {
    cpu::MatMulAvx512(a, M, K, lda, b.strips(), b.K, N, c, ldc);
    return;
  }
  if (UsesAvx2Kernels(kernel)) {
    cpu::MatMulAvx2(a, M, K, lda, b.strips(), b.K, N, c, ldc);
    return;
  }
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const RowMat, 0, Eigen::OuterStride<>> A(a, M, K, Eigen::OuterStride<>(lda));
  for (int64_t n0 = 0; n0 < N; n0 += W) {
    const int64_t width = std::min(W, N - n0);
    const Eigen::Map<const RowMat> strip(b.strips() + (n0 / W) * b.K * W, K, W);
    Eigen::Map<RowMat, 0, Eigen::OuterStride<>>(c + n0, M, width, Eigen::OuterStride<>(ldc)).noalias() =
        A * strip.leftCols(width);
  }
}

}  // namespace dsv3
